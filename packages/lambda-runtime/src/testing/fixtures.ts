import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { FakeGuestFactory } from "@openlambda/sandbox-core";
import type { InvokeResponse } from "../contracts.js";
import { createDeferredHandler, createGuestHandler, loadHandler } from "../guest/node-guest.js";

/** A fresh temp dir, removed by the returned cleanup. */
export async function tempDir(
  prefix: string,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes `files` (relative path → content) under `dir`. */
export async function writeTree(
  dir: string,
  files: Readonly<Record<string, string>>,
): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), content);
  }
}

/** A .tar.gz of `files`, made by the system's tar (a real archive, not our own writer). */
export async function tarGz(files: Readonly<Record<string, string>>): Promise<Buffer> {
  const { dir, cleanup } = await tempDir("ol-tar-src-");
  try {
    await writeTree(dir, files);
    return execFileSync("tar", ["-czf", "-", "-C", dir, ...Object.keys(files)]);
  } finally {
    await cleanup();
  }
}

/**
 * A fake-backend guest that runs the real Node guest runtime in this process: it loads the
 * sandbox's code dir and serves on its socket. Env is not per-sandbox here (one process).
 */
export const inProcessNodeGuest: FakeGuestFactory = async ({ spec, socketPath }) => {
  // Each sandbox is a fresh process in real backends; here a fresh module instance stands in.
  const cacheKey = `${spec.labels?.version ?? ""}-${Math.random()}`;
  const handler =
    spec.env?.OL_DEFERRED_LOAD === "1"
      ? createDeferredHandler(spec.codeDir, cacheKey)
      : createGuestHandler(
          await loadHandler(spec.codeDir, cacheKey),
          spec.env?.OL_LAMBDA_NAME ?? "lambda",
        );
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, resolve);
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

/** A response's whole body as text. */
export async function text(res: InvokeResponse): Promise<string> {
  if (res.body === null) return "";
  if (typeof res.body === "string") return res.body;
  if (res.body instanceof Uint8Array) return Buffer.from(res.body).toString("utf8");
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks).toString("utf8");
}
