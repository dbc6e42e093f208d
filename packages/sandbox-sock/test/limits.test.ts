import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Sandbox,
  type SandboxBackend,
  SandboxDeadError,
  type SandboxSpec,
} from "@openlambda/sandbox-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { detectCgroupLayout } from "../src/cgroup/layout.js";
import { readMountInfo } from "../src/mountinfo.js";
import { sockBackend } from "../src/sock-backend.js";
import type { SockSandbox } from "../src/sock-sandbox.js";
import { workerTag } from "../src/worker-tag.js";
import { PROBE_GUEST_SOURCE } from "./probe-guest.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

const MiB = 1024 * 1024;

describe.skipIf(whatIsMissing())("sock limits, pause and death", () => {
  let backend: SandboxBackend;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let code: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    work = await tempDir("ol-sock-limits-work-");
    code = await tempDir("ol-sock-limits-code-");
    await writeFile(`${code.path}/guest.mjs`, PROBE_GUEST_SOURCE);
    backend = sockBackend({ workDir: work.path, baseDir: await testBase(), cgroupPoolSize: 2 });
  });

  afterAll(async () => {
    await backend?.cleanup();
    await work?.remove();
    await code?.remove();
  });

  const spec = (limits: Partial<SandboxSpec["limits"]> = {}): SandboxSpec => ({
    codeDir: code.path,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    limits: { memoryMb: 128, cpuPercent: 100, procs: 32, timeoutMs: 10_000, ...limits },
  });
  const get = async (sandbox: Sandbox, path: string) => {
    const res = await request(`http://guest${path}`, { dispatcher: sandbox.dispatcher });
    return res.body.text();
  };

  /** The kernel's own files for a sandbox's cgroup, read directly (v1 on this host). */
  const kernelFile = (controller: string, sandbox: SockSandbox, file: string) => {
    const layout = detectCgroupLayout(readMountInfo());
    if (!layout.ok) throw new Error(layout.missing);
    const base =
      layout.layout.version === 1
        ? `${layout.layout.mounts[controller as "memory"]}/${workerTag(work.path)}`
        : `${layout.layout.mount}/${workerTag(work.path)}`;
    return readFileSync(`${base}/${sandbox.cgroup.name}/${file}`, "utf8").trim();
  };

  it("kills a guest that allocates past its memory limit, reports oom, refuses the next call, and the worker goes on", async () => {
    const sandbox = (await backend.create(spec({ memoryMb: 64 }))) as SockSandbox;
    await get(sandbox, "/alloc?mb=300").catch(() => undefined);
    expect(await sandbox.dead).toBe("oom");
    expect(sandbox.state).toBe("dead");
    await expect(get(sandbox, "/ping")).rejects.toBeInstanceOf(SandboxDeadError);
    await expect(sandbox.stats()).rejects.toThrow(/dead \(oom\)/);
    // This process (the worker) is alive and makes new sandboxes.
    const next = await backend.create(spec());
    try {
      expect(await get(next, "/ping")).toBe("pong");
    } finally {
      await next.destroy();
    }
  });

  it("stops a fork bomb at the pids limit; the guest still answers", async () => {
    const procs = 20;
    const sandbox = (await backend.create(spec({ procs, cpuPercent: 50 }))) as SockSandbox;
    try {
      expect(kernelFile("pids", sandbox, "pids.max")).toBe(String(procs));
      expect(kernelFile("cpu", sandbox, "cpu.cfs_quota_us")).toBe("50000");
      await get(sandbox, "/bomb");
      // It runs into the wall: the kernel counts refused forks in pids.events.
      await vi.waitFor(
        () =>
          expect(
            Number(kernelFile("pids", sandbox, "pids.events").split(/\s+/)[1]),
          ).toBeGreaterThan(0),
        { timeout: 5000 },
      );
      // At the limit (a fork in flight may be one short), never past it.
      for (let i = 0; i < 5; i++) {
        const { pids } = await sandbox.stats();
        expect(pids).toBeLessThanOrEqual(procs);
        expect(pids).toBeGreaterThanOrEqual(procs - 2);
        await sleep(50);
      }
      expect(await get(sandbox, "/ping")).toBe("pong");
    } finally {
      await sandbox.destroy();
    }
  });

  it("freezes a paused sandbox (the kernel says FROZEN), shrinks its limit, and answers again after unpause", async () => {
    const sandbox = (await backend.create(spec({ memoryMb: 200 }))) as SockSandbox;
    try {
      expect(await get(sandbox, "/ping")).toBe("pong");
      await sandbox.pause();
      expect(kernelFile("freezer", sandbox, "freezer.state")).toBe("FROZEN");
      expect(await sandbox.cgroup.freezerState()).toBe("frozen");
      // Every task of the sandbox is in the frozen cgroup.
      const tasks = kernelFile("freezer", sandbox, "cgroup.procs").split("\n").filter(Boolean);
      expect(tasks.length).toBeGreaterThanOrEqual(2);
      const paused = await sandbox.stats();
      expect(paused.memoryLimitBytes).toBeLessThan(200 * MiB);
      expect(paused.memoryLimitBytes).toBeGreaterThanOrEqual(paused.memoryBytes);
      let answered = false;
      const pending = get(sandbox, "/ping").then((t) => {
        answered = true;
        return t;
      });
      await sleep(300);
      expect(answered).toBe(false);
      await sandbox.unpause();
      expect(kernelFile("freezer", sandbox, "freezer.state")).toBe("THAWED");
      expect(await pending).toBe("pong");
      expect((await sandbox.stats()).memoryLimitBytes).toBe(200 * MiB);
    } finally {
      await sandbox.destroy();
    }
  });

  it("keeps the guest's output in logs() and reports a crash as crashed", async () => {
    await writeFile(
      `${code.path}/crash.mjs`,
      `${PROBE_GUEST_SOURCE}\nconsole.log("hello from the guest");\nsetTimeout(() => { console.error("bye"); process.exit(7); }, 300);\n`,
    );
    const sandbox = await backend.create({ ...spec(), command: ["node", "/handler/crash.mjs"] });
    // The helper copies output to the log as it comes: give it a moment.
    await vi.waitFor(async () => expect(await sandbox.logs()).toContain("hello from the guest"), {
      timeout: 2000,
    });
    expect(await sandbox.dead).toBe("crashed");
  });

  it("fails create with a clear error when the command does not exist", async () => {
    await expect(backend.create({ ...spec(), command: ["no-such-binary"] })).rejects.toThrow(
      /exec no-such-binary: No such file/,
    );
  });
});
