import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import { CONFORMANCE_GUEST_SOURCE } from "@openlambda/sandbox-core/conformance";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forceCleanup } from "../src/force-cleanup.js";
import { readMountInfo } from "../src/mountinfo.js";
import { sockBackend } from "../src/sock-backend.js";
import { sandboxesDir } from "../src/worker-tag.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

const MiB = 1024 * 1024;

interface Fill {
  readonly writtenMb: number;
  readonly code: string | null;
}

/** Free bytes of the filesystem holding `path`, as df counts them. */
async function free(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** Mounts under `dir`, from this process's (the host's) mount table. */
const mountsUnder = (dir: string) =>
  readMountInfo().filter((m) => m.mountPoint.startsWith(`${dir}/`));

describe.skipIf(whatIsMissing())("sock disk limit", () => {
  let backend: SandboxBackend;
  let base: string;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let code: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    work = await tempDir("ol-sock-disk-work-");
    code = await tempDir("ol-sock-disk-code-");
    await writeFile(join(code.path, "guest.mjs"), CONFORMANCE_GUEST_SOURCE);
    base = await testBase();
    backend = sockBackend({ workDir: work.path, baseDir: base, cgroupPoolSize: 2 });
  });

  afterAll(async () => {
    await backend?.cleanup();
    await work?.remove();
    await code?.remove();
  });

  const spec = (diskMb: number, overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
    codeDir: code.path,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    // Room for the guest and its files: the files are memory (tmpfs), charged to the sandbox.
    limits: { memoryMb: 128 + diskMb, cpuPercent: 100, procs: 32, timeoutMs: 10_000, diskMb },
    ...overrides,
  });
  const get = async (sandbox: Sandbox, path: string) => {
    const res = await request(`http://guest${path}`, { dispatcher: sandbox.dispatcher });
    return res.body.text();
  };
  const fill = async (sandbox: Sandbox, path: string, mb: number): Promise<Fill> =>
    JSON.parse(await get(sandbox, `/fill?path=${path}&mb=${mb}`)) as Fill;

  it("refuses the guest's writes past diskMb in /tmp and /host with ENOSPC; the host's disk stays put and the sandbox answers", async () => {
    const diskMb = 64;
    const sandbox = await backend.create(spec(diskMb));
    const stateDir = join(sandboxesDir(work.path), sandbox.id);
    try {
      const mounts = mountsUnder(work.path);
      expect(mounts.map((m) => [m.mountPoint, m.fsType])).toEqual([
        [join(stateDir, "disk"), "tmpfs"],
      ]);
      expect(mounts[0]?.superOptions).toContain(`size=${diskMb * 1024}k`);
      const hostFree = await free(work.path);
      const memory = (await sandbox.stats()).memoryBytes;

      // Twice the limit into /tmp: stopped at the limit.
      const tmp = await fill(sandbox, "/tmp/big", 2 * diskMb);
      expect(tmp.code).toBe("ENOSPC");
      expect(tmp.writtenMb).toBeGreaterThan(diskMb - 2);
      expect(tmp.writtenMb).toBeLessThanOrEqual(diskMb);
      // /host shares the budget: nothing left for it.
      const hostFull = await fill(sandbox, "/host/big", 2 * diskMb);
      expect(hostFull).toMatchObject({ code: "ENOSPC" });
      expect(hostFull.writtenMb).toBeLessThan(1);
      // The files are the sandbox's memory, not the host's disk.
      expect((await sandbox.stats()).memoryBytes - memory).toBeGreaterThan(diskMb * 0.9 * MiB);
      expect(hostFree - (await free(work.path))).toBeLessThan(32 * MiB);

      await get(sandbox, "/unlink?path=/tmp/big");
      const host = await fill(sandbox, "/host/big", 2 * diskMb);
      expect(host.code).toBe("ENOSPC");
      expect(host.writtenMb).toBeGreaterThan(diskMb - 2);
      expect(hostFree - (await free(work.path))).toBeLessThan(32 * MiB);
      expect(await get(sandbox, "/ping")).toBe("pong");
      expect(sandbox.state).toBe("running");
    } finally {
      await sandbox.destroy();
    }
    // Destroy unmounts it and removes its dirs.
    expect(mountsUnder(work.path)).toEqual([]);
    expect(existsSync(stateDir)).toBe(false);
  });

  it("bounds /tmp but leaves a caller's scratch dir a plain directory (installers)", async () => {
    const scratch = await tempDir("ol-sock-disk-scratch-");
    const sandbox = await backend.create(spec(8, { scratchDir: scratch.path }));
    try {
      expect(await fill(sandbox, "/tmp/f", 16)).toMatchObject({ code: "ENOSPC" });
      await get(sandbox, "/unlink?path=/tmp/f");
      expect(await fill(sandbox, "/host/f", 16)).toEqual({ writtenMb: 16, code: null });
      await get(sandbox, "/unlink?path=/host/f");
    } finally {
      await sandbox.destroy();
      await scratch.remove();
    }
    expect(mountsUnder(work.path)).toEqual([]);
  });

  it("leaves no disk mounted when a create fails", async () => {
    await expect(backend.create(spec(8, { command: ["no-such-binary"] }))).rejects.toThrow(
      /no-such-binary/,
    );
    expect(mountsUnder(work.path)).toEqual([]);
  });

  it("a SIGKILLed worker's disks are unmounted (by its reaper), and forceCleanup leaves none", async () => {
    const killed = await tempDir("ol-sock-disk-killed-");
    try {
      const fixture = fileURLToPath(new URL("./fixtures/hold-disk-sandboxes.mjs", import.meta.url));
      const child = spawn(process.execPath, [fixture, killed.path, base, code.path, "2"], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      const line = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(out.trim());
        });
        child.once("exit", (status) => reject(new Error(`fixture exited early (${status})`)));
      });
      const { ids } = JSON.parse(line) as { ids: string[] };
      expect(mountsUnder(killed.path).map((m) => m.mountPoint)).toEqual(
        ids.map((id) => join(sandboxesDir(killed.path), id, "disk")),
      );
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;

      // The backend's reaper sees the worker's pipe close and unmounts them.
      await expect.poll(() => mountsUnder(killed.path), { timeout: 5000 }).toEqual([]);
      const report = await forceCleanup(killed.path);
      expect(report.mountsRemoved).toBe(0);
      expect(mountsUnder(killed.path)).toEqual([]);
      expect(existsSync(sandboxesDir(killed.path))).toBe(false);
    } finally {
      await forceCleanup(killed.path);
      await killed.remove();
    }
  });
});
