import type { CpuGroup, SandboxLimits } from "@openlambda/sandbox-core";
import type { LambdaConfig } from "./contracts.js";
import type { LimitMaxima } from "./lambda-config.js";
import type { LambdaRuntime } from "./runtime-kind.js";
import type { WorkerConfig } from "./worker-config.js";

/** Limits in the config file's units (MiB, percent of a core, count, seconds). */
interface ConfigLimits {
  readonly mem_mb: number;
  readonly cpu_percent: number;
  readonly procs: number;
  readonly runtime_sec: number;
}

/** Config-file limits (`installer_limits`, ...) as a sandbox spec's. */
export function toSandboxLimits(limits: ConfigLimits): SandboxLimits {
  return {
    memoryMb: limits.mem_mb,
    cpuPercent: limits.cpu_percent,
    procs: limits.procs,
    timeoutMs: limits.runtime_sec * 1000,
  };
}

/**
 * A lambda's limits: its `ol.yaml` over the worker's defaults for its runtime (Node sandboxes
 * default to `node_mem_mb` and `node_procs`, Python ones to OpenLambda's `mem_mb` and `procs`).
 * Its /tmp and /host are tmpfs whose pages are charged to the sandbox's memory, so the sandbox
 * gets its memory plus its disk: files can take at most `diskMb` of that (ENOSPC past it), and
 * the memory pool reserves both, so the host is never promised more than it has.
 */
export function lambdaLimits(
  config: WorkerConfig,
  runtime: LambdaRuntime,
  own: LambdaConfig["limits"] = {},
): SandboxLimits {
  const cfg = config.limits;
  const node = runtime === "node";
  const diskMb = own.diskMb ?? cfg.disk_mb;
  const memMb = own.memMb ?? (node ? cfg.node_mem_mb : cfg.mem_mb);
  return {
    ...toSandboxLimits({
      mem_mb: memMb + diskMb,
      cpu_percent: own.cpuPercent ?? cfg.cpu_percent,
      procs: own.procs ?? (node ? cfg.node_procs : cfg.procs),
      runtime_sec: own.runtimeSec ?? cfg.runtime_sec,
    }),
    diskMb,
  };
}

/**
 * The CPU group all of a lambda's sandboxes share: `limits.lambda_cpu_percent`, or less where
 * its ol.yaml asks for less (never more: uploads asking for more are refused, and a worker
 * restarted with a lower cap holds older lambdas to it).
 */
export function lambdaCpuGroup(
  config: WorkerConfig,
  name: string,
  own: LambdaConfig["limits"] = {},
): CpuGroup {
  const cap = config.limits.lambda_cpu_percent;
  return { name, cpuPercent: Math.min(own.lambdaCpuPercent ?? cap, cap) };
}

/** The worker's bounds on what a lambda's ol.yaml may ask for (`limits.max_*`). */
export function lambdaLimitMaxima(config: WorkerConfig): LimitMaxima {
  const cfg = config.limits;
  return {
    memMb: { max: cfg.max_mem_mb, key: "limits.max_mem_mb" },
    cpuPercent: { max: cfg.max_cpu_percent, key: "limits.max_cpu_percent" },
    procs: { max: cfg.max_procs, key: "limits.max_procs" },
    runtimeSec: { max: cfg.max_runtime_sec, key: "limits.max_runtime_sec" },
    diskMb: { max: cfg.max_disk_mb, key: "limits.max_disk_mb" },
    lambdaCpuPercent: { max: cfg.lambda_cpu_percent, key: "limits.lambda_cpu_percent" },
  };
}
