import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fakeBackend, type SandboxBackend, type SandboxEvent } from "@openlambda/sandbox-core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { InvokeRequest } from "../contracts.js";
import {
  LambdaCrashedError,
  LambdaNotFoundError,
  LambdaTimeoutError,
  MethodNotAllowedError,
  QueueFullError,
} from "../errors.js";
import { DirectoryRegistry } from "../registry/directory-registry.js";
import { inProcessNodeGuest, tarGz, tempDir, text, writeTree } from "../testing/fixtures.js";
import { parseWorkerConfig, type WorkerConfig } from "../worker-config.js";
import { LambdaManager } from "./lambda-manager.js";

const req = (body: string | null = null, extra: Partial<InvokeRequest> = {}): InvokeRequest => ({
  method: "POST",
  path: "/",
  headers: {},
  body,
  ...extra,
});

const SLOW = `exports.f = async (e) => { await new Promise((r) => setTimeout(r, e.ms ?? 200)); return e; };`;

describe("LambdaManager over the fake backend and the real Node guest runtime", () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let backend: SandboxBackend;
  let manager: LambdaManager;
  let registry: DirectoryRegistry;
  let events: SandboxEvent[];

  /** `cpuGroups`: a fake backend that claims CPU groups (it enforces none). */
  const start = async (overrides: Partial<Record<string, unknown>> = {}, cpuGroups = false) => {
    const config: WorkerConfig = parseWorkerConfig(
      { registry_cache_ms: 50, pause_idle_ms: 20, ...overrides },
      root,
    );
    registry = new DirectoryRegistry({
      dir: config.registry,
      codeCacheDir: join(root, "code"),
      cacheMs: 50,
    });
    await registry.init();
    backend = fakeBackend({ guest: inProcessNodeGuest, workDir: join(root, "scratch"), cpuGroups });
    events = [];
    backend.on((e) => events.push(e));
    manager = new LambdaManager({ backend, registry, config, memoryWaitMs: 5000 });
  };
  const lambda = (name: string, files: Record<string, string>) =>
    writeTree(join(root, "registry", name), files);
  const creates = () => events.filter((e) => e.type === "created").length;

  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir("ol-manager-"));
  });
  afterEach(async () => {
    await manager?.shutdown();
    await cleanup();
  });

  it("puts every sandbox of a lambda in a CPU group of its name, at lambda_cpu_percent or what ol.yaml lowers it to", async () => {
    const specOf = async (name: string) => {
      const lease = await registry.acquire(name);
      try {
        return manager.specFor(lease.code);
      } finally {
        lease.release();
      }
    };
    await start({ limits: { lambda_cpu_percent: 150 } }, true);
    await lambda("a", { "f.js": "exports.f = () => 1;" });
    await lambda("b", {
      "f.py": "def f(e):\n    return 1\n",
      "ol.yaml": "limits:\n  lambda_cpu_percent: 50\n",
    });
    expect((await specOf("a")).cpuGroup).toEqual({ name: "a", cpuPercent: 150 });
    expect((await specOf("b")).cpuGroup).toEqual({ name: "b", cpuPercent: 50 });
    expect(await text(await manager.invoke("a", req()))).toBe("1");
    await manager.shutdown();
    // A backend that enforces no groups gets no group: its specs would be refused.
    await start({ limits: { lambda_cpu_percent: 150 } });
    expect((await specOf("a")).cpuGroup).toBeUndefined();
  });

  it("runs f(event) with the JSON body, {} for an empty body, and reuses the sandbox", async () => {
    await start();
    await lambda("echo", { "f.js": "exports.f = (e) => e;" });
    const res = await manager.invoke("echo", req('"hi"'));
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(await text(res)).toBe('"hi"');
    expect(await text(await manager.invoke("echo", req(null)))).toBe("{}");
    expect(await text(await manager.invoke("echo", req('{"x":1}')))).toBe('{"x":1}');
    expect(creates()).toBe(1);
  });

  it("runs a fetch handler with the sub-path, query and headers, streaming the response", async () => {
    await start();
    await lambda("web", {
      "f.mjs": `export default { async fetch(r) {
        const u = new URL(r.url);
        return new Response(JSON.stringify({ path: u.pathname, q: u.searchParams.get("q"), h: r.headers.get("x-test"), body: await r.text() }), { status: 201, headers: { "x-from": "lambda" } });
      } };`,
    });
    const res = await manager.invoke(
      "web",
      req("payload", { path: "/sub/path?q=1", headers: { "x-test": "yes" } }),
    );
    expect(res.status).toBe(201);
    expect(res.headers["x-from"]).toBe("lambda");
    expect(JSON.parse(await text(res))).toEqual({
      path: "/sub/path",
      q: "1",
      h: "yes",
      body: "payload",
    });
  });

  it("answers errors as OpenLambda does: 405 text, thrown error 500, bad JSON 400, unknown 404", async () => {
    await start();
    await lambda("strict", {
      "f.js": "exports.f = () => 1;",
      "ol.yaml": "triggers:\n  http:\n    - method: GET\n    - method: POST\n",
    });
    await lambda("thrower", { "f.js": "exports.f = () => { throw new Error('boom here'); };" });
    const refused = await manager
      .invoke("strict", req(null, { method: "PUT" }))
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(MethodNotAllowedError);
    expect((refused as Error).message).toBe(
      "HTTP method not allowed. Sent: PUT, Allowed: [GET POST]",
    );
    const thrown = await manager.invoke("thrower", req("{}"));
    expect(thrown.status).toBe(500);
    expect(await text(thrown)).toContain("boom here");
    const bad = await manager.invoke("thrower", req("{nope"));
    expect(bad.status).toBe(400);
    expect(await text(bad)).toContain("OL_INVALID_JSON");
    await expect(manager.invoke("nobody", req())).rejects.toBeInstanceOf(LambdaNotFoundError);
  });

  it("times out a slow call with 502 and serves the next call from a fresh sandbox", async () => {
    await start();
    await lambda("slow", { "f.js": SLOW, "ol.yaml": "limits:\n  timeout: 1\n" });
    await expect(manager.invoke("slow", req('{"ms": 3000}'))).rejects.toBeInstanceOf(
      LambdaTimeoutError,
    );
    await vi.waitFor(() =>
      expect(events.find((e) => e.type === "destroyed")).toMatchObject({ reason: "timeout" }),
    );
    const res = await manager.invoke("slow", req('{"ms": 1}'));
    expect(await text(res)).toBe('{"ms":1}');
    expect(creates()).toBe(2);
  });

  it("answers 502 when the sandbox dies mid-call, then recovers", async () => {
    await start();
    await lambda("dies", { "f.js": SLOW });
    const pending = manager.invoke("dies", req('{"ms": 2000}')).catch((e: unknown) => e);
    await sleep(200);
    const sandboxId = events.find((e) => e.type === "created")?.sandboxId;
    const debug = manager.debug() as {
      lambdas: { instances: { sandbox: { id: string } | null }[] }[];
    };
    expect(debug.lambdas[0]?.instances[0]?.sandbox?.id).toBe(sandboxId);
    await backend.cleanup(); // kills every sandbox, as a crash would
    expect(await pending).toBeInstanceOf(LambdaCrashedError);
    expect(await text(await manager.invoke("dies", req('{"ms": 1}')))).toBe('{"ms":1}');
  });

  it("answers 429 when the queue is full", async () => {
    await start({ queue_size: 1, max_instances: 1, instance_concurrency: 1 });
    await lambda("busy", { "f.js": SLOW });
    const first = manager.invoke("busy", req('{"ms": 300}'));
    await sleep(50);
    const second = manager.invoke("busy", req('{"ms": 1}'));
    await expect(manager.invoke("busy", req('{"ms": 1}'))).rejects.toBeInstanceOf(QueueFullError);
    expect(await text(await first)).toBe('{"ms":300}');
    expect(await text(await second)).toBe('{"ms":1}');
  });

  it("scales a busy lambda out to several sandboxes, bounded by max_instances", async () => {
    await start({ max_instances: 3, instance_concurrency: 1 });
    await lambda("wide", { "f.js": SLOW });
    await text(await manager.invoke("wide", req('{"ms": 100}'))); // teaches the autoscaler the run time
    const results = await Promise.all(
      Array.from({ length: 9 }, () => manager.invoke("wide", req('{"ms": 150}')).then(text)),
    );
    expect(results).toEqual(Array(9).fill('{"ms":150}'));
    expect(creates()).toBe(3);
  });

  it("serves several calls at once in one Node sandbox, up to instance_concurrency", async () => {
    await start({ max_instances: 1, instance_concurrency: 3 });
    // Each call reports how many calls its sandbox was serving at the most while it ran.
    await lambda("io", {
      "f.js": `let now = 0, most = 0;
exports.f = async () => { now++; most = Math.max(most, now); await new Promise((r) => setTimeout(r, 300)); now--; return most; };`,
    });
    const results = await Promise.all(
      Array.from({ length: 4 }, () => manager.invoke("io", req()).then(text)),
    );
    expect(creates()).toBe(1);
    expect(Math.max(...results.map(Number))).toBe(3); // three at once, the fourth waited
  });

  it("pauses an idle lambda's sandbox and unpauses it for the next call", async () => {
    await start({ pause_idle_ms: 10 });
    await lambda("idle", { "f.js": "exports.f = () => 'ok';" });
    await text(await manager.invoke("idle", req()));
    await sleep(100);
    expect(events.map((e) => e.type)).toContain("paused");
    await text(await manager.invoke("idle", req()));
    expect(events.map((e) => e.type)).toContain("unpaused");
    expect(creates()).toBe(1);
  });

  it("queues a create while the memory pool is full, and evicts paused sandboxes first", async () => {
    // 96 + a 32 MiB disk: 128 MiB a sandbox, two of them fill the pool.
    await start({ mem_pool_mb: 256, limits: { node_mem_mb: 96, disk_mb: 32 }, pause_idle_ms: 10 });
    for (const n of ["a", "b", "c"]) await lambda(n, { "f.js": SLOW });
    await text(await manager.invoke("a", req('{"ms": 1}')));
    // The pool holds a sandbox's memory and its disk (tmpfs, charged to the same cgroup).
    expect(manager.pool.usedMb).toBe(96 + 32);
    await sleep(60); // a is paused
    const b = manager.invoke("b", req('{"ms": 400}')).then(text);
    await sleep(50);
    // The pool is full: a (paused) and b (busy). c must evict a, never b.
    expect(await text(await manager.invoke("c", req('{"ms": 1}')))).toBe('{"ms":1}');
    const destroyed = events.filter((e) => e.type === "destroyed");
    expect(destroyed).toHaveLength(1);
    expect(destroyed[0]).toMatchObject({ reason: "evicted" });
    expect(await b).toBe('{"ms":400}');
    expect(manager.pool.usedMb).toBeLessThanOrEqual(256);
  });

  it("waits for memory instead of failing when every sandbox is busy", async () => {
    await start({
      mem_pool_mb: 128,
      limits: { node_mem_mb: 96, disk_mb: 32 },
      pause_idle_ms: 1000,
    });
    await lambda("one", { "f.js": SLOW });
    await lambda("two", { "f.js": SLOW });
    const one = manager.invoke("one", req('{"ms": 300}')).then(text);
    await sleep(50);
    // "two" waits for memory while "one" runs, then takes the memory "one" frees when idle.
    expect(await text(await manager.invoke("two", req('{"ms": 1}')))).toBe('{"ms":1}');
    expect(await one).toBe('{"ms":300}');
    expect(events.filter((e) => e.type === "destroyed")).toMatchObject([{ reason: "evicted" }]);
  });

  it("serves new code after the cache window and drains the old version's sandbox", async () => {
    await start();
    await lambda("ver", { "f.mjs": "export const f = () => 1;" });
    expect(await text(await manager.invoke("ver", req()))).toBe("1");
    await writeTree(join(root, "registry", "ver"), {
      "extra.txt": "",
      "f.mjs": "export const f = () => 2;",
    });
    await sleep(80);
    expect(await text(await manager.invoke("ver", req()))).toBe("2");
    await sleep(50);
    expect(events.filter((e) => e.type === "destroyed")).toMatchObject([{ reason: "drained" }]);
  });

  it("uses a fresh sandbox per call with reuse-sandbox: false", async () => {
    await start();
    await lambda("fresh", {
      "f.js": "exports.f = () => 'x';",
      "ol.yaml": "reuse-sandbox: false\n",
    });
    await text(await manager.invoke("fresh", req()));
    await text(await manager.invoke("fresh", req()));
    expect(creates()).toBe(2);
  });

  describe("code on disk", () => {
    // Reads one of its own files after a wait: proof that its version's files are still there.
    const app = (n: number) =>
      tarGz({
        "f.js": `const fs = require("node:fs");
exports.f = async (e) => { await new Promise((r) => setTimeout(r, e.ms ?? 0)); return fs.readFileSync(__dirname + "/data.txt", "utf8"); };`,
        "data.txt": `v${n}`,
      });
    const upload = async (name: string, gz: Buffer) =>
      registry.upload(
        name,
        (async function* () {
          yield gz;
        })(),
      );
    const versionDirs = (name: string) =>
      readdir(join(root, "code", name)).catch(() => [] as string[]);

    it("after an update and a delete the lambda's code dirs are gone; a call in flight keeps its version", async () => {
      await start();
      await upload("app", await app(1));
      expect(await text(await manager.invoke("app", req()))).toBe('"v1"');
      const v1 = (await registry.get("app")).dir;

      // An update drains the old version's instance without waiting for a call, then its files go.
      await upload("app", await app(2));
      await vi.waitFor(async () => {
        await registry.settled();
        await expect(stat(v1)).rejects.toThrow(/ENOENT/);
      });
      expect(events.filter((e) => e.type === "destroyed")).toMatchObject([{ reason: "drained" }]);
      expect(await text(await manager.invoke("app", req()))).toBe('"v2"');
      const v2 = (await registry.get("app")).dir;
      expect(await versionDirs("app")).toEqual([v2.split("/").at(-1)]);

      // A delete while a call runs: the call still reads its files, then they go.
      const inFlight = manager.invoke("app", req('{"ms": 300}')).then(text);
      await sleep(50);
      expect(await registry.remove("app")).toBe(true);
      await registry.settled();
      expect(await readFile(join(v2, "data.txt"), "utf8")).toBe("v2");
      expect(await inFlight).toBe('"v2"');
      await vi.waitFor(async () => {
        await registry.settled();
        expect(await readdir(join(root, "code"))).toEqual([]);
      });
      await expect(manager.invoke("app", req())).rejects.toBeInstanceOf(LambdaNotFoundError);
      expect(manager.debug()).toMatchObject({ lambdas: [] });
    });

    it("the same version uploaded again after its files went is extracted and served afresh", async () => {
      await start();
      await upload("app", await app(1));
      expect(await text(await manager.invoke("app", req()))).toBe('"v1"');
      await registry.remove("app");
      await vi.waitFor(async () => {
        await registry.settled();
        expect(await readdir(join(root, "code"))).toEqual([]);
      });
      await upload("app", await app(1));
      expect(await text(await manager.invoke("app", req()))).toBe('"v1"');
    });
  });
});
