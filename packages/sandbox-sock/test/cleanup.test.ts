import { spawn } from "node:child_process";
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
import { sockBackend } from "../src/sock-backend.js";
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
      // Only the pool's spare cgroups (and their parents) exist between sandboxes.
      expect(during.processes).toEqual([]);
      expect(during.mounts).toEqual([]);
      expect(during.dirs).toEqual([]);
      await backend.cleanup();
      expect(leftovers(work.path)).toEqual(NOTHING);
    } finally {
      await backend.cleanup();
      await work.remove();
    }
  }, 240_000);

  it("forceCleanup removes everything a SIGKILLed worker left behind", async () => {
    const work = await tempDir("ol-sock-killed-");
    try {
      const fixture = fileURLToPath(new URL("./fixtures/hold-sandboxes.mjs", import.meta.url));
      const child = spawn(process.execPath, [fixture, work.path, base, code.path, "3"], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      const line = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(out.trim());
        });
        child.once("exit", (code) => reject(new Error(`fixture exited early (${code})`)));
      });
      expect(JSON.parse(line).ids).toHaveLength(3);
      const before = leftovers(work.path);
      expect(before.dirs).toHaveLength(3);
      expect(before.cgroups.length).toBeGreaterThan(3);
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;

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
      });
    } finally {
      await forceCleanup(work.path);
      await work.remove();
    }
  });
});
