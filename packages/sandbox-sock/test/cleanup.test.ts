import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type SandboxSpec, silentLogger } from "@openlambda/sandbox-core";
import { CONFORMANCE_GUEST_SOURCE } from "@openlambda/sandbox-core/conformance";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectCgroupLayout, V1_CONTROLLERS } from "../src/cgroup/layout.js";
import { forceCleanup } from "../src/force-cleanup.js";
import { readMountInfo } from "../src/mountinfo.js";
import { egressNames } from "../src/network/egress.js";
import { sockBackend } from "../src/sock-backend.js";
import type { SockSandbox } from "../src/sock-sandbox.js";
import { sandboxesDir, workerTag } from "../src/worker-tag.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

/** Everything on the host that belongs to the work dir's tag. */
function leftovers(workDir: string) {
  const tag = workerTag(workDir);
  const layout = detectCgroupLayout(readMountInfo());
  if (!layout.ok) throw new Error(layout.missing);
  const roots =
    layout.layout.version === 1
      ? [
          ...new Set(
            V1_CONTROLLERS.map(
              (c) => (layout.layout as { mounts: Record<string, string> }).mounts[c],
            ),
          ),
        ]
      : [layout.layout.mount];
  const cgroups = roots.flatMap((root) => {
    const parent = `${root}/${tag}`;
    if (!existsSync(parent)) return [];
    return [
      parent,
      ...readdirSync(parent, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => `${parent}/${e.name}`),
    ];
  });
  const processes = readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(tag);
      } catch {
        return false;
      }
    });
  const mounts = readMountInfo().filter((m) => m.mountPoint.startsWith(workDir));
  const dir = sandboxesDir(workDir);
  const dirs = existsSync(dir) ? readdirSync(dir) : [];
  return { cgroups, processes, mounts, dirs };
}

const NOTHING = { cgroups: [], processes: [], mounts: [], dirs: [] };

/** What hold-sandboxes.mjs reports about the sandboxes it made. */
interface HeldSandbox {
  readonly id: string;
  readonly paused: boolean;
  readonly pids: number[];
  readonly cgroups: string[];
}

/** Starts a worker process (test/fixtures/hold-sandboxes.mjs) holding `count` sandboxes. */
async function holdSandboxes(
  args: { workDir: string; baseDir: string; codeDir: string },
  count: number,
  paused: number,
): Promise<{ child: ChildProcess; sandboxes: HeldSandbox[] }> {
  const fixture = fileURLToPath(new URL("./fixtures/hold-sandboxes.mjs", import.meta.url));
  const child = spawn(
    process.execPath,
    [fixture, args.workDir, args.baseDir, args.codeDir, String(count), String(paused)],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(out.trim());
    });
    child.once("exit", (code) => reject(new Error(`fixture exited early (${code})`)));
  });
  return { child, sandboxes: (JSON.parse(line) as { sandboxes: HeldSandbox[] }).sandboxes };
}

async function sigkill(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

/** Alive and not a zombie (a killed process waiting to be reaped is gone for our purpose). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** The tasks still in a cgroup dir (none when it is gone). */
function cgroupTasks(dir: string): number[] {
  try {
    return readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function isFrozen(dirs: readonly string[]): boolean {
  return dirs.some((dir) => {
    for (const [file, frozen] of [
      ["freezer.state", "FROZEN"],
      ["cgroup.freeze", "1"],
    ] as const) {
      if (existsSync(`${dir}/${file}`))
        return readFileSync(`${dir}/${file}`, "utf8").trim() === frozen;
    }
    return false;
  });
}

/** The reaper a backend started for the work dir's tag (its argv carries `--tag <tag>`). */
function reapersOf(workDir: string): number[] {
  const tag = workerTag(workDir);
  return readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .filter((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        return argv[0]?.endsWith("ol-sock-reaper") && argv.includes(tag);
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe.skipIf(whatIsMissing())("sock cleanup", () => {
  let code: Awaited<ReturnType<typeof tempDir>>;
  let base: string;

  beforeAll(async () => {
    code = await tempDir("ol-sock-cleanup-code-");
    await writeFile(`${code.path}/guest.mjs`, CONFORMANCE_GUEST_SOURCE);
    base = await testBase();
  });
  afterAll(() => code?.remove());

  const spec = (): SandboxSpec => ({
    codeDir: code.path,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    limits: { memoryMb: 128, cpuPercent: 100, procs: 32, timeoutMs: 10_000 },
  });

  it("leaves no mount, cgroup, process or scratch dir after 200 create/destroy cycles", async () => {
    const work = await tempDir("ol-sock-cycles-");
    const poolSize = 2;
    const backend = sockBackend({ workDir: work.path, baseDir: base, cgroupPoolSize: poolSize });
    try {
      // Two at a time (this box has two cores); every sandbox answers before it goes.
      for (let round = 0; round < 100; round++) {
        await Promise.all(
          [0, 1].map(async () => {
            const sandbox = await backend.create(spec());
            const res = await request("http://guest/ping", { dispatcher: sandbox.dispatcher });
            expect(await res.body.text()).toBe("pong");
            await sandbox.destroy();
          }),
        );
      }
      const during = leftovers(work.path);
      // Only the pool's spare cgroups (and their parents) exist between sandboxes, and one
      // process: the backend's reaper.
      expect(during.processes.map(Number)).toEqual(reapersOf(work.path));
      expect(during.processes).toHaveLength(1);
      expect(during.mounts).toEqual([]);
      expect(during.dirs).toEqual([]);
      await backend.cleanup();
      expect(leftovers(work.path)).toEqual(NOTHING);
    } finally {
      await backend.cleanup();
      await work.remove();
    }
  }, 240_000);

  it("forceCleanup removes everything a SIGKILLed worker and its stopped reaper left behind", async () => {
    const work = await tempDir("ol-sock-killed-");
    try {
      const { child, sandboxes } = await holdSandboxes(
        { workDir: work.path, baseDir: base, codeDir: code.path },
        3,
        1,
      );
      expect(sandboxes).toHaveLength(3);
      const before = leftovers(work.path);
      expect(before.dirs).toHaveLength(3);
      expect(before.cgroups.length).toBeGreaterThan(3);
      // A reaper that cannot run (stopped here; in life, say, killed with the worker's whole
      // service cgroup) leaves the sandboxes to forceCleanup, which also ends the reaper.
      const reapers = reapersOf(work.path);
      expect(reapers).toHaveLength(1);
      for (const pid of reapers) process.kill(pid, "SIGSTOP");
      await sigkill(child);

      const report = await forceCleanup(work.path, { logger: silentLogger });
      expect(report.dirsRemoved).toBe(3);
      expect(report.cgroupsRemoved).toBeGreaterThanOrEqual(3);
      expect(leftovers(work.path)).toEqual(NOTHING);
      // Idempotent: a second run finds nothing.
      expect(await forceCleanup(work.path)).toEqual({
        processesKilled: 0,
        cgroupsRemoved: 0,
        mountsRemoved: 0,
        dirsRemoved: 0,
        namespacesRemoved: 0,
      });
    } finally {
      await forceCleanup(work.path);
      await work.remove();
    }
  });

  it("a SIGKILLed worker leaves no sandbox running, paused ones included, and spares another backend's", async () => {
    const work = await tempDir("ol-sock-reaped-");
    // Another backend on the same work dir (this process): the killed worker's reaper must
    // leave its sandbox alone.
    const other = sockBackend({ workDir: work.path, baseDir: base, cgroupPoolSize: 0 });
    try {
      const survivor = await other.create(spec());
      const { child, sandboxes } = await holdSandboxes(
        { workDir: work.path, baseDir: base, codeDir: code.path },
        4,
        2,
      );
      const pids = sandboxes.flatMap((s) => s.pids);
      const cgroups = sandboxes.flatMap((s) => s.cgroups);
      expect(sandboxes).toHaveLength(4);
      // init and guest of each sandbox, and the paused ones really frozen: on cgroup v1 their
      // helpers' parent-death kill stays pending while frozen.
      for (const s of sandboxes) expect(s.pids.length).toBeGreaterThanOrEqual(2);
      expect(sandboxes.filter((s) => isFrozen(s.cgroups)).map((s) => s.paused)).toEqual([
        true,
        true,
      ]);
      expect(pids.filter(isAlive)).toEqual(pids);

      const theirReaper = reapersOf(work.path).filter((pid) => parentOf(pid) === child.pid);

      await sigkill(child);
      const deadline = Date.now() + 5000;
      const left = () => ({
        processes: pids.filter(isAlive),
        tasks: [...new Set(cgroups.flatMap(cgroupTasks))],
      });
      while (Date.now() < deadline && (left().processes.length > 0 || left().tasks.length > 0))
        await new Promise((r) => setTimeout(r, 50));
      expect(left()).toEqual({ processes: [], tasks: [] });
      // Its reaper did it: it removed the killed worker's sandbox cgroups, then exited.
      expect(theirReaper).toHaveLength(1);
      await expect
        .poll(
          () => ({
            cgroups: cgroups.filter((d) => existsSync(d)),
            reaper: theirReaper.filter(isAlive),
          }),
          { timeout: 2000 },
        )
        .toEqual({ cgroups: [], reaper: [] });

      // Nor disks (tmpfs pages are memory) nor egress namespaces of the killed worker's sandboxes.
      const killedDirs = sandboxes.map((s) => `${work.path}/sandboxes/${s.id}/`);
      const ours = egressNames(workerTag(work.path)).netnsPrefix;
      await expect
        .poll(
          () => ({
            mounts: readMountInfo()
              .map((m) => m.mountPoint)
              .filter((p) => killedDirs.some((d) => p.startsWith(d))),
            namespaces: readdirSync("/run/netns").filter((n) => n.startsWith(ours)),
          }),
          { timeout: 3000 },
        )
        .toEqual({ mounts: [], namespaces: [] });

      const res = await request("http://guest/ping", { dispatcher: survivor.dispatcher });
      expect(await res.body.text()).toBe("pong");
      expect(await (survivor as SockSandbox).cgroup.pids()).not.toEqual([]);
      await other.cleanup();
      expect(leftovers(work.path)).toEqual(NOTHING);
    } finally {
      await other.cleanup();
      await forceCleanup(work.path);
      await work.remove();
    }
  });
});
