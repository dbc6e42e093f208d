import type { SandboxSpec } from "@openlambda/sandbox-core";
import type { CpuGroups, GroupHold } from "./cpu-groups.js";
import type { CgroupDriver, SandboxCgroup } from "./driver.js";
import type { CgroupPool } from "./pool.js";

export interface CgroupSources {
  readonly driver: CgroupDriver;
  readonly pool: CgroupPool;
  readonly groups: CpuGroups;
}

/**
 * A new sandbox's cgroup with the spec's limits set: a pooled one, or for a spec with a CPU
 * group one whose CPU is under the group (v1: a pooled one with its cpu cgroup there; v2: one
 * made there, since the pool's live directly under the worker's parent). On failure nothing of
 * it is left and the group is not held.
 */
export async function takeSandboxCgroup(
  sources: CgroupSources,
  spec: SandboxSpec,
  name: string,
): Promise<{ cgroup: SandboxCgroup; group: GroupHold | undefined }> {
  const { driver, pool, groups } = sources;
  const limits = { memoryBytes: spec.limits.memoryMb * 1024 * 1024, procs: spec.limits.procs };
  if (!spec.cpuGroup) {
    const cgroup = await pool.take();
    try {
      await cgroup.setLimits({ ...limits, cpuPercent: spec.limits.cpuPercent });
    } catch (error) {
      await cgroup.remove().catch(() => {});
      throw error;
    }
    return { cgroup, group: undefined };
  }
  const group = await groups.hold(spec.cpuGroup);
  let pooled: SandboxCgroup | undefined;
  let cgroup: SandboxCgroup | undefined;
  try {
    pooled = driver.version === 1 ? await pool.take() : undefined;
    cgroup = await driver.createInGroup(spec.cpuGroup.name, name, pooled);
    await cgroup.setLimits(limits);
    await group.track(cgroup, spec.limits.cpuPercent);
    return { cgroup, group };
  } catch (error) {
    await (cgroup ?? pooled)?.remove().catch(() => {});
    await group.release();
    throw error;
  }
}
