import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { cliBin, NODE, SCRATCH_ROOT } from "./env.js";
import { type Child, startChild } from "./procs.js";

export interface OurWorker {
  readonly url: string;
  readonly dir: string;
  readonly registry: string;
  readonly pid: number;
  /** GET /stats (timers and counters). */
  stats(): Promise<Record<string, number>>;
  /** GET /debug with the admin token. */
  debug(): Promise<unknown>;
  stop(): Promise<void>;
}

export interface WorkerOptions {
  /** Scratch dir name under /tmp/ol-bench; the base root filesystem in it is kept between runs. */
  readonly name: string;
  /** `-o key=value` overrides. */
  readonly overrides?: readonly string[];
  /** Fills the registry dir before the worker starts. */
  readonly fill: (registry: string) => Promise<void>;
  /** Extra node flags for the worker process (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
}

/** Runs `ol worker up` in the foreground as a child process on 127.0.0.1 and a free port. */
export async function startWorker(o: WorkerOptions): Promise<OurWorker> {
  const dir = join(SCRATCH_ROOT, o.name);
  await mkdir(dir, { recursive: true });
  // Keep the base (rebuilt by init only when it changed); everything else starts fresh.
  for (const entry of await readdir(dir)) {
    if (entry !== "base") await rm(join(dir, entry), { recursive: true, force: true });
  }
  const registry = join(dir, "registry");
  await mkdir(registry, { recursive: true });
  await o.fill(registry);
  const args = [...(o.nodeFlags ?? []), cliBin(), "worker", "up", "-p", dir];
  for (const ov of ["worker_port=0", "worker_url=127.0.0.1", ...(o.overrides ?? [])])
    args.push("-o", ov);
  const child = startChild(NODE, args, { logFile: join(dir, "bench-worker.log") });
  const url = await waitReady(child, dir);
  const token = (await readFile(join(dir, "token"), "utf8")).trim();
  return {
    url,
    dir,
    registry,
    pid: child.pid,
    async stats() {
      const res = await request(`${url}/stats`);
      return (await res.body.json()) as Record<string, number>;
    },
    async debug() {
      const res = await request(`${url}/debug`, { headers: { authorization: `Bearer ${token}` } });
      return res.body.json();
    },
    async stop() {
      await child.stop(30_000);
      if (existsSync(join(dir, "worker.pid"))) {
        // It did not stop cleanly: make sure nothing it made is left.
        const fc = startChild(NODE, [cliBin(), "worker", "force-cleanup", "-p", dir]);
        await fc.exited;
      }
    },
  };
}

async function waitReady(child: Child, dir: string): Promise<string> {
  const deadline = Date.now() + 180_000;
  let exited = false;
  void child.exited.then(() => {
    exited = true;
  });
  while (Date.now() < deadline && !exited) {
    try {
      const record = JSON.parse(await readFile(join(dir, "worker.pid"), "utf8")) as {
        pid: number;
        url: string;
      };
      if (record.pid === child.pid) {
        const res = await request(`${record.url}/status`, { headersTimeout: 2000 });
        const text = await res.body.text();
        if (res.statusCode === 200 && text.trim() === "ready") return record.url;
      }
    } catch {}
    await sleep(100);
  }
  await child.stop(5000);
  throw new Error(`our worker did not become ready:\n${child.output().slice(-3000)}`);
}

/** Writes a Node lambda dir NAME/f.js. */
export async function writeLambda(registry: string, name: string, source: string): Promise<string> {
  const dir = join(registry, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "f.js"), source);
  return dir;
}

export const ECHO_SOURCE = "exports.f = (event) => event;\n";
export const HELLO_SOURCE = 'exports.f = () => "hello";\n';
