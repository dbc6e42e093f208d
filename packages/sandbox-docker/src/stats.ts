import type { SandboxStats } from "@openlambda/sandbox-core";

/** The parts of `GET /containers/ID/stats` this backend reads (cgroup v1 and v2 shapes). */
export interface EngineStats {
  readonly memory_stats?: {
    readonly usage?: number;
    readonly limit?: number;
    readonly stats?: Readonly<Record<string, number>>;
  };
  readonly cpu_stats?: { readonly cpu_usage?: { readonly total_usage?: number } };
  readonly pids_stats?: { readonly current?: number };
}

/**
 * Maps the engine's stats to the contract's. Memory is usage minus inactive page cache, as
 * `docker stats` computes it, so that it tracks what the guest holds rather than files it read.
 */
export function toSandboxStats(raw: EngineStats, specLimitBytes: number): SandboxStats {
  const mem = raw.memory_stats ?? {};
  const cache = mem.stats?.total_inactive_file ?? mem.stats?.inactive_file ?? 0;
  const usage = mem.usage ?? 0;
  return {
    memoryBytes: Math.max(0, usage - (cache < usage ? cache : 0)),
    // An unlimited cgroup reports the host's memory; the contract wants the sandbox's limit.
    memoryLimitBytes: mem.limit && mem.limit <= specLimitBytes ? mem.limit : specLimitBytes,
    // The engine reports nanoseconds.
    cpuUsageUs: Math.round((raw.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1000),
    pids: raw.pids_stats?.current ?? 0,
  };
}
