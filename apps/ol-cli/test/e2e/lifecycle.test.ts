/**
 * The `ol` commands around a worker: `worker up -d`, `worker status --json`, `admin install`,
 * `worker down`, and `worker force-cleanup` after the worker was killed with SIGKILL. After
 * `down` and `force-cleanup` nothing of the worker is left: no mount under its dir, no cgroup
 * with its tag, no process, no container.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Backend,
  cgroupPids,
  containersOf,
  describeBackends,
  isAlive,
  once,
  survivors,
  Worker,
  WorkerDir,
  writeLambda,
} from "./harness.js";
import * as L from "./lambdas.js";

/** What the backend has running for the worker now: sandbox pids, or containers. */
async function liveSandboxes(wd: WorkerDir, backend: Backend): Promise<string[]> {
  if (backend.name === "docker") return containersOf(wd.dockerWorkerId);
  return wd.sockTags.flatMap(cgroupPids).map(String);
}

await describeBackends("ol worker commands", (backend) => {
  const overrides = ["worker_port=0", "worker_url=127.0.0.1", ...backend.options].flatMap((o) => [
    "-o",
    o,
  ]);

  describe("up -d, status, admin install, down", () => {
    let wd: WorkerDir;
    let source: string;
    beforeAll(async () => {
      wd = await WorkerDir.make();
      source = await mkdtemp(join(tmpdir(), "ol-e2e-src-"));
      await writeLambda(join(source, "greeter"), L.env);
      await writeLambda(join(source, "greeter"), {
        "ol.yaml": `environment:\n  GREETING: "installed"\n  ANSWER: 7\n`,
      });
    });
    afterAll(async () => {
      // Whatever happened above, nothing may stay running.
      if (wd) {
        if ((await wd.leftovers()).length > 0) wd.ol(["worker", "force-cleanup", "-p", wd.dir]);
        await wd.remove();
      }
      if (source) await rm(source, { recursive: true, force: true });
    });

    it("starts detached, reports its status, installs a lambda, and stops leaving nothing", async () => {
      const up = wd.ol(["worker", "up", "-d", "-p", wd.dir, ...overrides]);
      expect(up.status, up.stderr).toBe(0);
      const record = await wd.pidRecord();
      expect(record).toBeDefined();
      expect(isAlive(record!.pid)).toBe(true);

      const status = wd.ol(["worker", "status", "-p", wd.dir, "--json"]);
      expect(status.status, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({
        pid: record!.pid,
        url: record!.url,
        ready: true,
        sandbox: backend.name,
      });

      // The README's first call: the example lambdas are seeded into a fresh registry.
      const echo = await fetch(`${record!.url}/run/echo`, { method: "POST", body: '"hi"' });
      expect([echo.status, await echo.text()]).toEqual([200, '"hi"']);

      const install = wd.ol([
        "admin",
        "install",
        "-p",
        wd.dir,
        "-n",
        "greeter2",
        "--json",
        join(source, "greeter"),
      ]);
      expect(install.status, install.stderr).toBe(0);
      expect(JSON.parse(install.stdout)).toMatchObject({ name: "greeter2" });
      const greet = await fetch(`${record!.url}/run/greeter2`);
      expect(await greet.json()).toEqual({ greeting: "installed", answer: "7", name: "greeter2" });

      const sandboxes = await liveSandboxes(wd, backend);
      expect(sandboxes.length).toBeGreaterThan(0);

      const down = wd.ol(["worker", "down", "-p", wd.dir]);
      expect(down.status, down.stderr).toBe(0);
      expect(isAlive(record!.pid)).toBe(false);
      expect(await wd.leftovers()).toEqual([]);
      if (backend.name === "sock") {
        expect(await survivors(sandboxes.map(Number))).toEqual([]);
      }
      expect(await wd.pidRecord()).toBeUndefined();

      const after = wd.ol(["worker", "status", "-p", wd.dir]);
      expect(after.status).toBe(1);
      expect(after.stderr).toContain("OL_WORKER_NOT_RUNNING");
    });
  });

  describe("force-cleanup after SIGKILL", () => {
    let w: Worker | undefined;
    afterEach((ctx) => {
      if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
    });
    afterAll(async () => {
      await w?.stop().catch(() => {});
    });

    it("removes every mount, cgroup, process and container the killed worker left", async () => {
      w = await Worker.start({ backend, lambdas: { echo: L.echo, slow: L.slow } });
      expect((await w.run("echo", { body: "1" })).status).toBe(200);
      // One sandbox paused, one busy when the worker dies.
      await w.waitFor("echo to be paused", (v) =>
        v.lambdas.some((l) => l.name === "echo" && l.instances.some((i) => i.state === "paused")),
      );
      const busy = w.run("slow", { body: { ms: 20_000 } }).catch(() => undefined);
      await w.waitFor("slow to run", (v) =>
        v.lambdas.some((l) => l.name === "slow" && l.instances.some((i) => i.state === "running")),
      );
      const sandboxes = await liveSandboxes(w.wd, backend);
      expect(sandboxes.length).toBeGreaterThanOrEqual(2);

      w.child.kill("SIGKILL");
      await busy;
      expect(await once(w.child, 10_000)).toBe(true);
      // The killed worker's sandboxes outlive it: force-cleanup has work to do.
      expect(await w.wd.leftovers()).not.toEqual([]);

      const cleanup = w.wd.ol(["worker", "force-cleanup", "-p", w.dir, "--json"]);
      expect(cleanup.status, cleanup.stderr).toBe(0);
      const report = JSON.parse(cleanup.stdout) as { backend: string };
      expect(report.backend).toBe(backend.name);
      expect(await w.wd.leftovers()).toEqual([]);
      if (backend.name === "sock") {
        expect(await survivors(sandboxes.map(Number))).toEqual([]);
      }
    });
  });
});
