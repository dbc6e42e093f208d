import { readFileSync } from "node:fs";
import { cpus, freemem, loadavg, release, totalmem } from "node:os";

export interface MachineInfo {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryMb: number;
  readonly freeMemoryMb: number;
  readonly kernel: string;
  readonly node: string;
  readonly loadAvg: readonly number[];
  readonly cgroup: "v1" | "v2";
}

export function machineInfo(): MachineInfo {
  let cgroup: "v1" | "v2" = "v1";
  try {
    readFileSync("/sys/fs/cgroup/cgroup.controllers");
    cgroup = "v2";
  } catch {}
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryMb: Math.round(totalmem() / 2 ** 20),
    freeMemoryMb: Math.round(freemem() / 2 ** 20),
    kernel: release(),
    node: process.version,
    loadAvg: loadavg().map((x) => Math.round(x * 100) / 100),
    cgroup,
  };
}

/** The machine was busy when the 1-minute load was above its core count at start or end. */
export function busyNote(start: MachineInfo, end: MachineInfo): string | undefined {
  const worst = Math.max(start.loadAvg[0] ?? 0, end.loadAvg[0] ?? 0);
  return worst > start.cores * 0.75
    ? `machine busy: 1-min load ${worst} on ${start.cores} cores (other work ran beside the bench)`
    : undefined;
}
