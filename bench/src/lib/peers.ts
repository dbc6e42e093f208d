import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { nodeGuestRuntimeDir } from "@openlambda/lambda-runtime";
import { NODE, require, SCRATCH_ROOT, SERVERS_DIR } from "./env.js";
import { type Child, freePort, startChild } from "./procs.js";

/** A server under test: where to send requests and how to stop it. */
export interface Running {
  readonly url: string;
  stop(): Promise<void>;
}

/** The ceiling: the function in-process behind node:http. */
export async function startCeiling(handlerDir: string): Promise<Running> {
  const child = startChild(NODE, [join(SERVERS_DIR, "inproc.mjs"), handlerDir]);
  const line = await child.line(/^listening \d+/, 15_000);
  return { url: `http://127.0.0.1:${line.split(" ")[1]}`, stop: () => child.stop() };
}

/** Resolves once something accepts connections on the unix socket. */
export async function waitSocket(path: string, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void child?.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline) {
    if (exited) throw new Error(`guest exited before listening:\n${child?.output()}`);
    if (existsSync(path)) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(path);
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      if (ok) return;
    }
    await sleep(1);
  }
  throw new Error(`nothing listened on ${path} within ${timeoutMs} ms`);
}

/** Starts a Node guest without any isolation: our runtime (node-guest.js) or the minimal one. */
export async function startBareGuest(
  handlerDir: string,
  socketPath: string,
  which: "minimal" | "ours",
): Promise<Child> {
  await rm(socketPath, { force: true });
  if (which === "minimal") {
    const child = startChild(NODE, [join(SERVERS_DIR, "guest.mjs"), handlerDir, socketPath]);
    await child.line(/^listening/, 15_000);
    return child;
  }
  const child = startChild(NODE, [join(nodeGuestRuntimeDir(), "node-guest.js")], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      OL_GUEST_SOCKET: socketPath,
      OL_HANDLER_DIR: handlerDir,
      OL_LAMBDA_NAME: "echo",
    },
  });
  await waitSocket(socketPath, 15_000, child);
  return child;
}

/** The floor: a minimal reverse proxy over a unix socket to a Node guest. */
export async function startFloor(handlerDir: string, which: "minimal" | "ours"): Promise<Running> {
  const dir = join(SCRATCH_ROOT, `floor-${which}`);
  await mkdir(dir, { recursive: true });
  const socketPath = join(dir, "guest.sock");
  const guest = await startBareGuest(handlerDir, socketPath, which);
  const proxy = startChild(NODE, [join(SERVERS_DIR, "proxy.mjs"), socketPath]);
  const line = await proxy.line(/^listening \d+/, 15_000);
  return {
    url: `http://127.0.0.1:${line.split(" ")[1]}`,
    async stop() {
      await proxy.stop();
      await guest.stop();
    },
  };
}

/** The workerd binary shipped by the `workerd` npm package (its native one, not the JS shim). */
export function workerdBinary(): { path?: string; why?: string; compatibilityDate?: string } {
  try {
    const mod = require("workerd") as { default?: string; compatibilityDate?: string };
    const bin = mod.default;
    if (!bin || !existsSync(bin))
      return {
        why: `the workerd package found no native binary for ${process.platform}-${process.arch}`,
      };
    return {
      path: bin,
      ...(mod.compatibilityDate ? { compatibilityDate: mod.compatibilityDate } : {}),
    };
  } catch (error) {
    return { why: `the workerd npm package is not usable here (${(error as Error).message})` };
  }
}

/**
 * workerd running the same function as an ES module worker: `fetch` parses the JSON body,
 * calls f, answers JSON. One process, its default single thread.
 */
export async function startWorkerd(fSource: string): Promise<Running> {
  const bin = workerdBinary();
  if (!bin.path) throw new Error(bin.why);
  const dir = join(SCRATCH_ROOT, "workerd");
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  await writeFile(
    join(dir, "worker.js"),
    [
      "const exports = {};",
      fSource,
      "const f = exports.f;",
      "export default {",
      "  async fetch(request) {",
      "    const text = await request.text();",
      "    return Response.json(await f(text ? JSON.parse(text) : {}));",
      "  },",
      "};",
      "",
    ].join("\n"),
  );
  await writeFile(
    join(dir, "config.capnp"),
    [
      'using Workerd = import "/workerd/workerd.capnp";',
      "const config :Workerd.Config = (",
      '  services = [ (name = "main", worker = .mainWorker) ],',
      `  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],`,
      ");",
      "const mainWorker :Workerd.Worker = (",
      '  modules = [ (name = "worker", esModule = embed "worker.js") ],',
      `  compatibilityDate = "${bin.compatibilityDate ?? "2024-09-23"}",`,
      ");",
      "",
    ].join("\n"),
  );
  const child = startChild(bin.path, ["serve", join(dir, "config.capnp")], { cwd: dir });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return { url, stop: () => child.stop() };
    if (child.process.exitCode !== null) break;
    await sleep(50);
  }
  await child.stop();
  throw new Error(`workerd did not listen on ${url}: ${child.output().slice(-1500)}`);
}

/** Whether a Docker engine answers on its socket (version string, or why not). */
export async function dockerEngine(): Promise<{ version?: string; why?: string }> {
  const socket = "/var/run/docker.sock";
  if (!existsSync(socket)) return { why: `no Docker engine: ${socket} does not exist` };
  try {
    const { Client } = await import("undici");
    const client = new Client("http://localhost", { socketPath: socket });
    const res = await client.request({ path: "/version", method: "GET", headersTimeout: 3000 });
    const body = (await res.body.json()) as { Version?: string };
    await client.close();
    return { version: body.Version ?? "unknown" };
  } catch (error) {
    return { why: `no Docker engine answers on ${socket}: ${(error as Error).message}` };
  }
}
