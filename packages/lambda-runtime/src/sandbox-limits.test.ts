import { describe, expect, it } from "vitest";
import {
  lambdaCpuGroup,
  lambdaLimitMaxima,
  lambdaLimits,
  toSandboxLimits,
} from "./sandbox-limits.js";
import { parseWorkerConfig } from "./worker-config.js";

describe("sandbox limits from the worker config", () => {
  const config = parseWorkerConfig({}, "/srv/ol");

  it("converts config units (MiB, percent, count, seconds) to a sandbox's", () => {
    expect(toSandboxLimits({ mem_mb: 64, cpu_percent: 50, procs: 7, runtime_sec: 3 })).toEqual({
      memoryMb: 64,
      cpuPercent: 50,
      procs: 7,
      timeoutMs: 3000,
    });
  });

  it("gives Node and Python their own memory and procs defaults, plus the disk in memory", () => {
    // The disk (32 MiB by default) is tmpfs charged to the sandbox: its memory limit covers it.
    expect(lambdaLimits(config, "node")).toEqual({
      memoryMb: 128 + 32,
      cpuPercent: 100,
      procs: 32,
      timeoutMs: 30_000,
      diskMb: 32,
    });
    expect(lambdaLimits(config, "python")).toEqual({
      memoryMb: 50 + 32,
      cpuPercent: 100,
      procs: 10,
      timeoutMs: 30_000,
      diskMb: 32,
    });
  });

  it("lets ol.yaml override each limit", () => {
    const own = { memMb: 256, cpuPercent: 20, procs: 5, runtimeSec: 2, diskMb: 8 };
    const expected = { memoryMb: 264, cpuPercent: 20, procs: 5, timeoutMs: 2000, diskMb: 8 };
    expect(lambdaLimits(config, "node", own)).toEqual(expected);
    expect(lambdaLimits(config, "python", own)).toEqual(expected);
  });

  it("gives each lambda a CPU group of its own name, lambda_cpu_percent or less from ol.yaml", () => {
    expect(lambdaCpuGroup(config, "f")).toEqual({ name: "f", cpuPercent: 100 });
    const capped = parseWorkerConfig({ limits: { lambda_cpu_percent: 250 } }, "/srv/ol");
    expect(lambdaCpuGroup(capped, "g", { lambdaCpuPercent: 50 })).toEqual({
      name: "g",
      cpuPercent: 50,
    });
    // Never above the worker's: uploads over it are refused, and an older lambda on a worker
    // restarted with a lower cap gets the worker's.
    expect(lambdaCpuGroup(capped, "g", { lambdaCpuPercent: 300 }).cpuPercent).toBe(250);
    // A sandbox's own cpu_percent is another limit: it does not change the group's.
    expect(lambdaCpuGroup(capped, "g", { cpuPercent: 400 }).cpuPercent).toBe(250);
  });

  it("names each maximum by its config key", () => {
    const bounded = parseWorkerConfig(
      {
        limits: {
          max_mem_mb: 1,
          max_cpu_percent: 2,
          max_procs: 3,
          max_runtime_sec: 4,
          max_disk_mb: 5,
          mem_mb: 1,
          node_mem_mb: 1,
          cpu_percent: 2,
          procs: 3,
          node_procs: 3,
          runtime_sec: 4,
          disk_mb: 5,
          lambda_cpu_percent: 6,
        },
      },
      "/srv/ol",
    );
    expect(lambdaLimitMaxima(bounded)).toEqual({
      memMb: { max: 1, key: "limits.max_mem_mb" },
      cpuPercent: { max: 2, key: "limits.max_cpu_percent" },
      procs: { max: 3, key: "limits.max_procs" },
      runtimeSec: { max: 4, key: "limits.max_runtime_sec" },
      diskMb: { max: 5, key: "limits.max_disk_mb" },
      lambdaCpuPercent: { max: 6, key: "limits.lambda_cpu_percent" },
    });
  });
});
