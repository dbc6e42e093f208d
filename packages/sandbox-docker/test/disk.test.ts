import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Sandbox } from "@openlambda/sandbox-core";
import { request } from "undici";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import type { DockerBackend } from "../src/docker-backend.js";
import { engineSocketPath } from "../src/engine-address.js";
import { DockerEngine } from "../src/engine-client.js";
import { forceCleanup } from "../src/force-cleanup.js";
import { codeDir, describeDocker, spec, testBackend } from "./helpers/context.js";

const MiB = 1024 * 1024;
const dist = fileURLToPath(new URL("../dist/index.js", import.meta.url));

interface Fill {
  readonly writtenMb: number;
  readonly code: string | null;
}

/** Mount point and type of each mount of this process (the host's), unescaped. */
function mounts(): { at: string; type: string }[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const f = line.split(" ");
      const at = (f[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      );
      return { at, type: f[f.indexOf("-", 6) + 1] ?? "" };
    });
}

async function free(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** A worker in miniature: two sandboxes with a disk limit, then it waits to be killed. */
const CHILD = `
const { dockerBackend } = await import(process.env.OL_DIST);
const backend = dockerBackend({ image: process.env.OL_IMAGE, workerId: process.env.OL_WORKER });
const spec = {
  codeDir: process.env.OL_CODE,
  runtime: "node",
  command: ["node", "/handler/guest.mjs"],
  limits: { memoryMb: 144, cpuPercent: 50, procs: 32, timeoutMs: 1000, diskMb: 16 },
};
const sandboxes = await Promise.all([backend.create(spec), backend.create(spec)]);
console.log(JSON.stringify(sandboxes.map((s) => s.id)));
setInterval(() => {}, 1000);
`;

describeDocker("docker disk limit", () => {
  let backend: DockerBackend;
  let engine: DockerEngine;
  let code: Awaited<ReturnType<typeof codeDir>>;
  beforeAll(async () => {
    backend = testBackend();
    engine = new DockerEngine(engineSocketPath());
    code = await codeDir();
  });
  afterAll(async () => {
    await backend.cleanup();
    await engine.close();
    await code.dispose();
  });

  const labelsOf = async (containerId: string) =>
    (
      await engine.json<{ Config: { Labels: Record<string, string> } }>({
        method: "GET",
        path: `/containers/${containerId}/json`,
        what: "inspect",
      })
    ).body.Config.Labels;
  const get = async (sandbox: Sandbox, path: string) => {
    const res = await request(`http://guest${path}`, { dispatcher: sandbox.dispatcher });
    return res.body.text();
  };
  const fill = async (sandbox: Sandbox, path: string, mb: number): Promise<Fill> =>
    JSON.parse(await get(sandbox, `/fill?path=${path}&mb=${mb}`)) as Fill;

  it("refuses the guest's writes past diskMb in /tmp and /host with ENOSPC; the host's disk stays put and the sandbox answers", async () => {
    expect(backend.capabilities.limits.disk).toBe(true);
    const diskMb = 64;
    const sandbox = await backend.create(
      spec(code.dir, {
        limits: { memoryMb: 128 + diskMb, cpuPercent: 100, procs: 32, timeoutMs: 10_000, diskMb },
      }),
    );
    const containerId = (sandbox as unknown as { containerId: string }).containerId;
    const disk = (await labelsOf(containerId))["org.openlambda.owned-scratch"] ?? "";
    try {
      expect(mounts().filter((m) => m.at === disk)).toEqual([{ at: disk, type: "tmpfs" }]);
      const hostFree = await free(disk.replace(/\/[^/]+$/, ""));
      const memory = (await sandbox.stats()).memoryBytes;

      const tmp = await fill(sandbox, "/tmp/big", 2 * diskMb);
      expect(tmp.code).toBe("ENOSPC");
      expect(tmp.writtenMb).toBeGreaterThan(diskMb - 2);
      expect(tmp.writtenMb).toBeLessThanOrEqual(diskMb);
      // One budget for /tmp and /host.
      const hostFull = await fill(sandbox, "/host/big", 2 * diskMb);
      expect(hostFull).toMatchObject({ code: "ENOSPC" });
      expect(hostFull.writtenMb).toBeLessThan(1);
      // The files are the container's memory, not the host's disk.
      expect((await sandbox.stats()).memoryBytes - memory).toBeGreaterThan(diskMb * 0.9 * MiB);
      expect(hostFree - (await free(disk.replace(/\/[^/]+$/, "")))).toBeLessThan(32 * MiB);

      await get(sandbox, "/unlink?path=/tmp/big");
      const host = await fill(sandbox, "/host/big", 2 * diskMb);
      expect(host.code).toBe("ENOSPC");
      expect(host.writtenMb).toBeGreaterThan(diskMb - 2);
      expect(await get(sandbox, "/ping")).toBe("pong");
    } finally {
      await sandbox.destroy();
    }
    expect(mounts().filter((m) => m.at === disk)).toEqual([]);
    expect(existsSync(disk)).toBe(false);
  });

  it("forceCleanup unmounts the disks of a SIGKILLed worker's sandboxes", async () => {
    const workerId = `${inject("workerId")}-disk-killed`;
    const { image } = await backend.ready();
    const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD], {
      env: {
        ...process.env,
        OL_DIST: dist,
        OL_IMAGE: image,
        OL_WORKER: workerId,
        OL_CODE: code.dir,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const ids = await new Promise<string[]>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve(JSON.parse(out) as string[]);
      });
      child.once("exit", (c) => reject(new Error(`child exited early with ${c}`)));
    });
    expect(ids).toHaveLength(2);
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    const disks = mounts().filter((m) => ids.some((id) => m.at.endsWith(`/${id}`)));
    expect(disks.map((m) => m.type)).toEqual(["tmpfs", "tmpfs"]);

    expect(await forceCleanup({ workerId })).toEqual({ containers: 2, scratchDirs: 2 });
    for (const { at } of disks) {
      expect(mounts().filter((m) => m.at === at)).toEqual([]);
      expect(existsSync(at)).toBe(false);
    }
  });
});
