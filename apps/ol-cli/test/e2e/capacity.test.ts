/**
 * Capacity limits through a real worker: a full queue answers 429; when the memory pool is
 * exhausted creates wait (and then succeed) instead of failing; eviction takes paused
 * sandboxes before running ones.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type DebugInstance, describeBackends, type RunResult, Worker } from "./harness.js";
import * as L from "./lambdas.js";

const sandboxOf = (instances: readonly DebugInstance[]) =>
  instances.find((i) => i.sandbox !== null)?.sandbox ?? null;

await describeBackends("capacity", (backend) => {
  describe("a full queue", () => {
    let w: Worker;
    beforeAll(async () => {
      w = await Worker.start({
        backend,
        // One call at a time in the one sandbox, so the queue is what fills.
        options: ["queue_size=1", "max_instances=1", "instance_concurrency=1"],
        lambdas: { slow: L.slow },
      });
    });
    afterAll(async () => {
      await w?.stop();
    });
    afterEach((ctx) => {
      if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
    });

    it("answers 429 past queue_size, and serves what it queued", async () => {
      expect((await w.run("slow", { body: { ms: 0 } })).status).toBe(200);
      const first = w.run("slow", { body: { ms: 1500 } });
      await w.waitFor("the first call to run", (v) =>
        (v.lambdas.find((l) => l.name === "slow")?.instances ?? []).some(
          (i) => i.state === "running" && i.invocations === 2,
        ),
      );
      const second = w.run("slow", { body: { ms: 0 } });
      await w.waitFor("the second call to be queued", (v) =>
        v.lambdas.some((l) => l.name === "slow" && l.queue === 1),
      );
      const third = await w.run("slow", { body: { ms: 0 } });
      expect(third.status).toBe(429);
      expect(third.json).toMatchObject({ error: { code: "OL_QUEUE_FULL" } });
      expect((await first).status).toBe(200);
      expect((await second).status).toBe(200);
      expect((await w.run("slow", { body: { ms: 0 } })).status).toBe(200);
    });
  });

  describe("the memory pool", () => {
    let w: Worker;
    beforeAll(async () => {
      // Room for two 128 MiB Node sandboxes (96 MiB and a 32 MiB disk, which is memory too),
      // not three; the headroom (a tenth) stays free.
      // No zygotes (pre-started runtimes): the pool then holds only the lambdas' sandboxes.
      w = await Worker.start({
        backend,
        options: [
          "mem_pool_mb=300",
          "limits.node_mem_mb=96",
          "limits.disk_mb=32",
          "pause_idle_ms=2000",
          "features.import_cache=",
        ],
        lambdas: { a: L.slow, b: L.slow, c: L.slow, p: L.slow, q: L.slow, r: L.slow },
      });
    });
    afterAll(async () => {
      await w?.stop();
    });
    afterEach((ctx) => {
      if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
    });

    it("a create that does not fit waits for memory, then succeeds", async () => {
      const a = w.run("a", { body: { ms: 2000 } });
      const b = w.run("b", { body: { ms: 2000 } });
      await w.waitFor("a and b to run", (v) => v.memPool.usedMb === 256);
      let waited = false;
      let overcommitted = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const v = await w.debug();
          if (v.memPool.waiting > 0) waited = true;
          overcommitted = Math.max(overcommitted, v.memPool.usedMb - v.memPool.totalMb);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const started = Date.now();
      const c: RunResult = await w.run("c", { body: { ms: 0 } });
      const cTookMs = Date.now() - started;
      watching = false;
      await watcher;
      expect(c.status, c.text).toBe(200);
      expect(waited).toBe(true);
      expect(overcommitted).toBeLessThanOrEqual(0);
      // It waited for a or b to finish (they had about 2 s to go).
      expect(cTookMs).toBeGreaterThan(800);
      expect((await a).status).toBe(200);
      expect((await b).status).toBe(200);
    });

    it("eviction frees a paused sandbox first, not a running one", async () => {
      // p runs once and is paused; q runs and is still running (idle, within pause_idle_ms)
      // when r needs memory: the evictor must take p's sandbox and leave q's alone.
      expect((await w.run("p", { body: { ms: 0 } })).status).toBe(200);
      await w.waitFor("p to be paused", (v) =>
        (v.lambdas.find((l) => l.name === "p")?.instances ?? []).some((i) => i.state === "paused"),
      );
      expect((await w.run("q", { body: { ms: 0 } })).status).toBe(200);
      const before = await w.debug();
      const pSandbox = sandboxOf(before.lambdas.find((l) => l.name === "p")!.instances);
      const qSandbox = sandboxOf(before.lambdas.find((l) => l.name === "q")!.instances);
      expect(pSandbox?.state).toBe("paused");
      expect(qSandbox?.state).toBe("running");
      expect(before.memPool.totalMb - before.memPool.usedMb).toBeLessThan(128);
      const evictionsBefore = (await w.fetch("/stats")).json as Record<string, number>;

      const r = await w.run("r", { body: { ms: 0 } });
      expect(r.status, r.text).toBe(200);

      const after = await w.debug();
      const pNow = sandboxOf(after.lambdas.find((l) => l.name === "p")!.instances);
      const qNow = sandboxOf(after.lambdas.find((l) => l.name === "q")!.instances);
      expect(pNow?.id).not.toBe(pSandbox?.id);
      expect(qNow?.id).toBe(qSandbox?.id);
      const stats = (await w.fetch("/stats")).json as Record<string, number>;
      expect(stats.evictions).toBeGreaterThan(evictionsBefore.evictions ?? 0);
    });
  });
});
