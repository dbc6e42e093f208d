import type { SandboxLimits } from "@openlambda/sandbox-core";
import type { LambdaConfig } from "./contracts.js";
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
 */
export function lambdaLimits(
  config: WorkerConfig,
  runtime: LambdaRuntime,
  own: LambdaConfig["limits"] = {},
): SandboxLimits {
  const cfg = config.limits;
  const node = runtime === "node";
  return toSandboxLimits({
    mem_mb: own.memMb ?? (node ? cfg.node_mem_mb : cfg.mem_mb),
    cpu_percent: own.cpuPercent ?? cfg.cpu_percent,
    procs: own.procs ?? (node ? cfg.node_procs : cfg.procs),
    runtime_sec: own.runtimeSec ?? cfg.runtime_sec,
  });
}
