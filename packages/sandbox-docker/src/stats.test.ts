import { describe, expect, it } from "vitest";
import { toSandboxStats } from "./stats.js";

const MIB = 1024 * 1024;

describe("toSandboxStats", () => {
  it("maps cgroup v1 stats, without inactive page cache, ns to µs", () => {
    const stats = toSandboxStats(
      {
        memory_stats: {
          usage: 50 * MIB,
          limit: 256 * MIB,
          stats: { total_inactive_file: 10 * MIB },
        },
        cpu_stats: { cpu_usage: { total_usage: 2_500_000 } },
        pids_stats: { current: 7 },
      },
      256 * MIB,
    );
    expect(stats).toEqual({
      memoryBytes: 40 * MIB,
      memoryLimitBytes: 256 * MIB,
      cpuUsageUs: 2500,
      pids: 7,
    });
  });

  it("maps cgroup v2 stats", () => {
    const stats = toSandboxStats(
      { memory_stats: { usage: 30 * MIB, limit: 128 * MIB, stats: { inactive_file: MIB } } },
      128 * MIB,
    );
    expect(stats.memoryBytes).toBe(29 * MIB);
  });

  it("reports the spec's limit when the engine reports the host's memory, and zeros when empty", () => {
    expect(
      toSandboxStats({ memory_stats: { limit: 64 * 1024 * MIB } }, 128 * MIB).memoryLimitBytes,
    ).toBe(128 * MIB);
    expect(toSandboxStats({}, 128 * MIB)).toEqual({
      memoryBytes: 0,
      memoryLimitBytes: 128 * MIB,
      cpuUsageUs: 0,
      pids: 0,
    });
  });
});
