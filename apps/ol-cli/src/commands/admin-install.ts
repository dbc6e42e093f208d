import { readFile, stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { createInterface } from "node:readline";
import { assertLambdaName } from "@openlambda/lambda-runtime";
import { create } from "tar";
import { request } from "undici";
import { print, progress } from "../output.js";
import { readWorkerConfig } from "../worker/config-file.js";
import { AdminRequestError } from "../worker/errors.js";
import { workerLayout } from "../worker/layout.js";
import { liveWorker } from "../worker/pid-file.js";
import { workerUrl } from "./up.js";

export interface InstallOptions {
  readonly path: string;
  readonly name?: string;
  readonly url?: string;
  readonly json: boolean;
}

/** Packs a lambda directory as .tar.gz and uploads it to the worker with the admin token. */
export async function run(dir: string, options: InstallOptions): Promise<void> {
  const source = resolve(dir);
  if (!(await stat(source).catch(() => undefined))?.isDirectory()) {
    throw new AdminRequestError(`${source} is not a directory`);
  }
  const name = options.name ?? basename(source);
  assertLambdaName(name);
  const layout = workerLayout(options.path);
  const token = (
    process.env.OL_ADMIN_TOKEN ?? (await readFile(layout.token, "utf8").catch(() => ""))
  ).trim();
  const url =
    options.url ?? (await liveWorker(layout))?.url ?? workerUrl(await readWorkerConfig(layout));

  progress(`packing ${source}`);
  const chunks: Buffer[] = [];
  for await (const chunk of create({ gzip: true, cwd: source, portable: true }, ["."])) {
    chunks.push(Buffer.from(chunk as Uint8Array));
  }
  const archive = Buffer.concat(chunks);
  progress(`uploading ${name} (${(archive.length / 1024).toFixed(1)} KiB) to ${url}`);
  const res = await request(`${url}/registry/${encodeURIComponent(name)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip" },
    body: archive,
  }).catch((error: unknown) => {
    throw new AdminRequestError(`cannot reach the worker at ${url}: ${(error as Error).message}`, {
      cause: error,
    });
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) {
    let detail = text;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (parsed.error) detail = `${parsed.error.code}: ${parsed.error.message}`;
    } catch {}
    throw new AdminRequestError(`the worker refused ${name} (HTTP ${res.statusCode}): ${detail}`);
  }
  const result = JSON.parse(text) as { name: string; version: string };
  const prepared = await prepare(url, token, result.name);
  if (options.json) print(JSON.stringify({ ...result, prepareMs: prepared.ms }));
  else
    print(
      `installed ${result.name} (version ${result.version}); call it at ${url}/run/${result.name}`,
    );
}

/**
 * Has the worker install the lambda's dependencies now, showing the package manager's output,
 * so that the first call does not wait for it (and an install failure shows here).
 */
async function prepare(url: string, token: string, name: string): Promise<{ ms: number }> {
  progress(`preparing ${name} (dependencies, if any)`);
  const res = await request(`${url}/registry/${encodeURIComponent(name)}/prepare`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
  });
  if (res.statusCode !== 200) {
    const text = await res.body.text();
    throw new AdminRequestError(
      `the worker could not prepare ${name} (HTTP ${res.statusCode}): ${text}`,
    );
  }
  let done: { ms: number } | undefined;
  for await (const raw of createInterface({ input: res.body })) {
    if (raw.trim() === "") continue;
    const msg = JSON.parse(raw) as {
      line?: string;
      done?: boolean;
      ms?: number;
      error?: { code: string; message: string };
    };
    if (msg.line !== undefined) progress(`  ${msg.line}`);
    if (msg.done) done = { ms: msg.ms ?? 0 };
    if (msg.error) {
      throw new AdminRequestError(
        `${name} was stored, but preparing it failed: ${msg.error.code}: ${msg.error.message}`,
      );
    }
  }
  if (!done) throw new AdminRequestError(`the worker stopped answering while preparing ${name}`);
  return done;
}
