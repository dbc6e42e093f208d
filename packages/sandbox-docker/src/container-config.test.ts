import type { SandboxSpec } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { containerConfig } from "./container-config.js";

const spec: SandboxSpec = {
  codeDir: "/srv/code/echo",
  runtime: "node",
  command: ["node", "/handler/guest.mjs"],
  limits: { memoryMb: 128, cpuPercent: 50, procs: 16, timeoutMs: 1000 },
  env: { A: "1" },
  packages: { "left-pad": "/srv/pkgs/left-pad", "@scope/x": "/srv/pkgs/scope-x" },
};

const input = {
  spec,
  sandboxId: "docker-abc",
  image: "openlambda-base:123",
  scratchDir: "/tmp/ol-docker-1/docker-abc",
  ownsScratch: true,
  workerId: "w1",
  instanceId: "i1",
  user: "65534:65534",
  tmpMb: 16,
};

type Config = {
  Cmd: string[];
  Env: string[];
  User: string;
  Labels: Record<string, string>;
  HostConfig: Record<string, unknown> & {
    Mounts: { Source: string; Target: string; ReadOnly: boolean }[];
  };
};

describe("containerConfig", () => {
  const config = containerConfig(input) as unknown as Config;

  it("mounts code read-only at /handler, scratch read-write at /host, packages read-only", () => {
    expect(config.HostConfig.Mounts).toEqual([
      { Type: "bind", Source: "/srv/code/echo", Target: "/handler", ReadOnly: true },
      { Type: "bind", Source: "/tmp/ol-docker-1/docker-abc", Target: "/host", ReadOnly: false },
      { Type: "bind", Source: "/srv/pkgs/scope-x", Target: "/packages/@scope/x", ReadOnly: true },
      { Type: "bind", Source: "/srv/pkgs/left-pad", Target: "/packages/left-pad", ReadOnly: true },
    ]);
  });

  it("enforces memory (no swap on top), cpu percent, pids", () => {
    expect(config.HostConfig).toMatchObject({
      Memory: 128 * 1024 * 1024,
      MemorySwap: 128 * 1024 * 1024,
      CpuPeriod: 100_000,
      CpuQuota: 50_000,
      PidsLimit: 16,
      AutoRemove: false,
      ReadonlyRootfs: true,
    });
  });

  it("runs the spec's argv as an unprivileged user with its env", () => {
    expect(config.Cmd).toEqual(["node", "/handler/guest.mjs"]);
    expect(config.User).toBe("65534:65534");
    expect(config.Env).toContain("A=1");
    expect(config.Env).toContain("OL_GUEST_SOCKET=/host/ol.sock");
  });

  it("labels the container with the worker, the backend value and the scratch it owns", () => {
    expect(config.Labels).toEqual({
      "org.openlambda.managed": "true",
      "org.openlambda.worker": "w1",
      "org.openlambda.backend-instance": "i1",
      "org.openlambda.sandbox": "docker-abc",
      "org.openlambda.owned-scratch": "/tmp/ol-docker-1/docker-abc",
    });
    const notOwned = containerConfig({ ...input, ownsScratch: false }) as unknown as Config;
    expect(notOwned.Labels["org.openlambda.owned-scratch"]).toBeUndefined();
  });

  it("gives /tmp an engine tmpfs of tmpMb, or binds the sandbox's disk dirs at /host and /tmp", () => {
    expect(config.HostConfig.Tmpfs).toEqual({ "/tmp": "rw,nosuid,nodev,size=16m,mode=1777" });
    const onDisk = containerConfig({
      ...input,
      ownedDir: "/w/docker-abc",
      scratchDir: "/w/docker-abc/host",
      tmpDir: "/w/docker-abc/tmp",
    }) as unknown as Config;
    expect(onDisk.HostConfig.Tmpfs).toBeUndefined();
    expect(onDisk.HostConfig.Mounts.slice(1, 3)).toEqual([
      { Type: "bind", Source: "/w/docker-abc/host", Target: "/host", ReadOnly: false },
      { Type: "bind", Source: "/w/docker-abc/tmp", Target: "/tmp", ReadOnly: false },
    ]);
    // Force-cleanup removes the disk, host and tmp together.
    expect(onDisk.Labels["org.openlambda.owned-scratch"]).toBe("/w/docker-abc");
  });

  it("maps network modes, host by default", () => {
    expect(config.HostConfig.NetworkMode).toBe("host");
    const none = containerConfig({
      ...input,
      spec: { ...spec, network: "none" },
    }) as unknown as Config;
    expect(none.HostConfig.NetworkMode).toBe("none");
  });

  it("never asks for less than the kernel's minimum CFS quota", () => {
    const tiny = containerConfig({
      ...input,
      spec: { ...spec, limits: { ...spec.limits, cpuPercent: 1 } },
    }) as unknown as Config;
    expect(tiny.HostConfig.CpuQuota).toBe(1000);
  });
});
