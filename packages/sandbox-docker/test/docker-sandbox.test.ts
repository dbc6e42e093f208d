import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Sandbox, SandboxUnsupportedError } from "@openlambda/sandbox-core";
import { request } from "undici";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import type { DockerBackend } from "../src/docker-backend.js";
import { engineSocketPath } from "../src/engine-address.js";
import { DockerEngine } from "../src/engine-client.js";
import { codeDir, describeDocker, spec, testBackend } from "./helpers/context.js";

/** Prints to both streams and tries to write its read-only code dir, then runs the guest. */
const WRAPPER = `
import { readdirSync, writeFileSync } from "node:fs";
console.log("hello on stdout");
console.log("interfaces: " + readdirSync("/sys/class/net").sort().join(","));
console.error("hello on stderr");
try { writeFileSync("/handler/x", "x"); console.log("handler: writable"); }
catch (e) { console.log("handler: " + e.code); }
await import("./guest.mjs");
`;

async function get<T>(sandbox: Sandbox, path: string): Promise<T> {
  const res = await request(`http://guest${path}`, { dispatcher: sandbox.dispatcher });
  return (await res.body.json()) as T;
}

interface Inspect {
  Config: { User: string; Labels: Record<string, string> };
  HostConfig: Record<string, unknown>;
  Mounts: { Destination: string; RW: boolean }[];
  State: { Status: string };
}

describeDocker("docker sandboxes on a real engine", () => {
  let backend: DockerBackend;
  let engine: DockerEngine;
  let code: Awaited<ReturnType<typeof codeDir>>;
  const inspect = async (sandbox: Sandbox) =>
    (
      await engine.json<Inspect>({
        method: "GET",
        path: `/containers/${(sandbox as unknown as { containerId: string }).containerId}/json`,
        what: "inspect",
      })
    ).body;

  beforeAll(async () => {
    backend = testBackend();
    engine = new DockerEngine(engineSocketPath());
    code = await codeDir({ "wrapper.mjs": WRAPPER });
  });
  afterAll(async () => {
    await backend.cleanup();
    await engine.close();
    await code.dispose();
  });

  it("ready() reports the engine and the base image, and checks the API version", async () => {
    const info = await backend.ready();
    expect(info.engine.apiVersion).toMatch(/^1\.\d+$/);
    expect(info.image).toMatch(/^openlambda-base:/);
  });

  it("gives the engine the spec's limits, mounts, user, network and our labels", async () => {
    const sandbox = await backend.create(
      spec(code.dir, {
        limits: { memoryMb: 100, cpuPercent: 50, procs: 40, timeoutMs: 1000 },
        packages: { "left-pad": code.dir },
      }),
    );
    try {
      const info = await inspect(sandbox);
      expect(info.HostConfig).toMatchObject({
        Memory: 100 * 1024 * 1024,
        MemorySwap: 100 * 1024 * 1024,
        CpuQuota: 50_000,
        CpuPeriod: 100_000,
        PidsLimit: 40,
        NetworkMode: "host",
        ReadonlyRootfs: true,
        AutoRemove: false,
      });
      // A uid of its own from the default range, its gid the same number.
      expect(info.Config.User).toMatch(/^(\d{7,}):\1$/);
      expect(info.Config.Labels).toMatchObject({
        "org.openlambda.managed": "true",
        "org.openlambda.worker": inject("workerId"),
        "org.openlambda.sandbox": sandbox.id,
      });
      const rw = Object.fromEntries(info.Mounts.map((m) => [m.Destination, m.RW]));
      expect(rw).toEqual({ "/handler": false, "/host": true, "/packages/left-pad": false });
      expect(await get(sandbox, "/read?path=/packages/left-pad/guest.mjs")).toMatchObject({
        ok: true,
      });
    } finally {
      await sandbox.destroy();
    }
  });

  it("keeps /handler read-only and returns the guest's stdout and stderr from logs()", async () => {
    const sandbox = await backend.create(
      spec(code.dir, { command: ["node", "/handler/wrapper.mjs"] }),
    );
    try {
      const logs = await sandbox.logs();
      expect(logs).toContain("hello on stdout\n");
      expect(logs).toContain("hello on stderr\n");
      expect(logs).toContain("handler: EROFS");
    } finally {
      await sandbox.destroy();
    }
  });

  it("network none leaves the guest only a loopback interface", async () => {
    const wrapped = spec(code.dir, { command: ["node", "/handler/wrapper.mjs"] });
    const none = await backend.create({ ...wrapped, network: "none" });
    const host = await backend.create(wrapped);
    try {
      const interfaces = async (s: Sandbox) =>
        /interfaces: (.*)/.exec(await s.logs())?.[1]?.split(",");
      expect(await interfaces(none)).toEqual(["lo"]);
      expect((await interfaces(host))?.length).toBeGreaterThan(1);
    } finally {
      await Promise.all([none.destroy(), host.destroy()]);
    }
  });

  it("destroys a paused sandbox, removing its container and its scratch dir", async () => {
    const sandbox = await backend.create(spec(code.dir));
    const info = await inspect(sandbox);
    const scratch = (info.Config.Labels["org.openlambda.owned-scratch"] ?? "") as string;
    expect(scratch).not.toBe("");
    await sandbox.pause();
    expect((await inspect(sandbox)).State.Status).toBe("paused");
    await sandbox.destroy();
    await expect(inspect(sandbox)).rejects.toThrow(/No such container/);
    await expect(stat(scratch)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("uses a caller's scratch dir for the guest's socket and leaves it in place", async () => {
    const scratch = await mkdtemp(join(tmpdir(), "ol-test-docker-scratch-"));
    try {
      const sandbox = await backend.create(spec(code.dir, { scratchDir: scratch }));
      expect(await readdir(scratch)).toContain("ol.sock");
      await sandbox.destroy();
      expect((await stat(scratch)).isDirectory()).toBe(true);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it("refuses to create from a parent: Docker cannot fork", async () => {
    const parent = await backend.create(spec(code.dir));
    try {
      await expect(backend.create(spec(code.dir), parent)).rejects.toBeInstanceOf(
        SandboxUnsupportedError,
      );
      await expect(parent.fork(spec(code.dir))).rejects.toBeInstanceOf(SandboxUnsupportedError);
    } finally {
      await parent.destroy();
    }
  });
});
