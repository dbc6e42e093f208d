import { describe, expect, it } from "vitest";
import { lambdaLimits, toSandboxLimits } from "./sandbox-limits.js";
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

  it("gives Node and Python their own memory and procs defaults", () => {
    expect(lambdaLimits(config, "node")).toEqual({
      memoryMb: 128,
      cpuPercent: 100,
      procs: 32,
      timeoutMs: 30_000,
    });
    expect(lambdaLimits(config, "python")).toEqual({
      memoryMb: 50,
      cpuPercent: 100,
      procs: 10,
      timeoutMs: 30_000,
    });
  });

  it("lets ol.yaml override each limit", () => {
    const own = { memMb: 256, cpuPercent: 20, procs: 5, runtimeSec: 2 };
    const expected = { memoryMb: 256, cpuPercent: 20, procs: 5, timeoutMs: 2000 };
    expect(lambdaLimits(config, "node", own)).toEqual(expected);
    expect(lambdaLimits(config, "python", own)).toEqual(expected);
  });
});
