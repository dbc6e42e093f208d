import { describe, expect, it } from "vitest";
import { InvalidWorkerConfigError } from "./errors.js";
import { applyOverrides, defaultWorkerConfig, parseWorkerConfig } from "./worker-config.js";

describe("worker config", () => {
  it("fills OpenLambda's defaults", () => {
    const config = parseWorkerConfig({}, "/srv/ol");
    expect(config).toMatchObject({
      worker_dir: "/srv/ol",
      worker_url: "localhost",
      worker_port: 5000,
      sandbox: "sock",
      registry: "/srv/ol/registry",
      registry_cache_ms: 5000,
      limits: { procs: 10, mem_mb: 50, cpu_percent: 100, runtime_sec: 30, lambda_cpu_percent: 100 },
    });
  });

  it("has a disk default and maxima for what a lambda may ask", () => {
    expect(parseWorkerConfig({}, "/srv/ol").limits).toMatchObject({
      disk_mb: 32,
      max_mem_mb: 1024,
      max_cpu_percent: 400,
      max_procs: 256,
      max_runtime_sec: 900,
      max_disk_mb: 512,
    });
    const base = defaultWorkerConfig("/srv/ol");
    expect(applyOverrides(base, ["limits.max_mem_mb=4096"]).limits.max_mem_mb).toBe(4096);
    expect(() => applyOverrides(base, ["limits.max_disk_mb=8"])).toThrow(
      /limits.disk_mb is 32, over limits.max_disk_mb \(8\)/,
    );
  });

  it("merges nested keys and resolves a relative registry against the worker dir", () => {
    const config = parseWorkerConfig({ registry: "lambdas", limits: { mem_mb: 64 } }, "/srv/ol");
    expect(config.registry).toBe("/srv/ol/lambdas");
    expect(config.limits).toMatchObject({ mem_mb: 64, procs: 10 });
  });

  it.each([
    [{ colour: "red" }, /unknown key colour/],
    [{ limits: { quota_mb: 5 } }, /unknown key limits.quota_mb/],
    [{ limits: { max_disk_mb: 0 } }, /limits.max_disk_mb must be a positive integer/],
    [{ limits: { mem_mb: 2048 } }, /limits.mem_mb is 2048, over limits.max_mem_mb \(1024\)/],
    [{ limits: { max_mem_mb: 100 } }, /limits.node_mem_mb is 128, over limits.max_mem_mb \(100\)/],
    [{ limits: { max_procs: 16 } }, /limits.node_procs is 32, over limits.max_procs \(16\)/],
    [{ limits: { cpu_percent: 401 } }, /limits.cpu_percent is 401, over limits.max_cpu_percent/],
    [{ limits: { runtime_sec: 901 } }, /limits.runtime_sec is 901, over limits.max_runtime_sec/],
    [{ limits: { disk_mb: 513 } }, /limits.disk_mb is 513, over limits.max_disk_mb \(512\)/],
    [{ limits: { lambda_cpu_percent: 0 } }, /limits.lambda_cpu_percent must be a positive/],
    [{ worker_port: 70000 }, /worker_port must be a port number/],
    [{ sandbox: "vm" }, /sandbox must be one of sock, docker/],
    [{ features: { enable_seccomp: "yes" } }, /features.enable_seccomp must be true or false/],
    [[], /must hold a JSON object/],
    [{ sandbox_uids: { first: 0 } }, /sandbox_uids.first must be a positive integer/],
    [{ sandbox_uids: { count: -3 } }, /sandbox_uids.count must be a positive integer/],
    [
      { sandbox_uids: { first: 4_294_967_000, count: 1000 } },
      /sandbox_uids.first \+ sandbox_uids.count/,
    ],
  ])("refuses %j naming the key", (raw, message) => {
    expect(() => parseWorkerConfig(raw, "/srv/ol")).toThrow(InvalidWorkerConfigError);
    expect(() => parseWorkerConfig(raw, "/srv/ol")).toThrow(message);
  });

  it("applies -o overrides with typed values and names a bad key", () => {
    const base = defaultWorkerConfig("/srv/ol");
    const config = applyOverrides(base, [
      "worker_port=5050",
      "limits.mem_mb=64",
      "features.reuse_cgroups=false",
      "sandbox=docker",
    ]);
    expect(config.worker_port).toBe(5050);
    expect(config.limits.mem_mb).toBe(64);
    expect(config.features.reuse_cgroups).toBe(false);
    expect(config.sandbox).toBe("docker");
    expect(base.worker_port).toBe(5000);
    expect(() => applyOverrides(base, ["nope=1"])).toThrow(/unknown key nope/);
    expect(() => applyOverrides(base, ["worker_port"])).toThrow(/key=value/);
    expect(() => applyOverrides(base, ["worker_port=abc"])).toThrow(/worker_port must be a port/);
    expect(applyOverrides(base, ["sandbox_uids.first=200000"]).sandbox_uids).toEqual({
      first: 200000,
      count: 65536,
    });
    expect(() => applyOverrides(base, ["sandbox_uids.count=4294967295"])).toThrow(
      /sandbox_uids.first \+ sandbox_uids.count/,
    );
  });
});
