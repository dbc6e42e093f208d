import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { MountEntry } from "../mountinfo.js";

/** The v1 controllers SOCK uses; cpu and cpuacct may share one hierarchy (`cpu,cpuacct`). */
export const V1_CONTROLLERS = ["memory", "cpu", "cpuacct", "pids", "freezer"] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];
/** The v2 controllers SOCK enables for its sandboxes (freeze and kill are core files in v2). */
export const V2_CONTROLLERS = ["memory", "cpu", "pids"] as const;

export type CgroupLayout =
  | { readonly version: 1; readonly mounts: Readonly<Record<V1Controller, string>> }
  | { readonly version: 2; readonly mount: string };

export type LayoutResult = { ok: true; layout: CgroupLayout } | { ok: false; missing: string };

/**
 * Finds the cgroup hierarchies from the mount table. v1 wins when it has every controller SOCK
 * needs (a hybrid host like this one mounts an empty v2 tree at /sys/fs/cgroup/unified); else a
 * v2 mount with those controllers available.
 */
export function detectCgroupLayout(mounts: readonly MountEntry[]): LayoutResult {
  const v1: Partial<Record<V1Controller, string>> = {};
  let v2: string | undefined;
  for (const m of mounts) {
    if (m.fsType === "cgroup") {
      for (const c of V1_CONTROLLERS) {
        if (m.superOptions.includes(c) && !v1[c]) v1[c] = m.mountPoint;
      }
    } else if (m.fsType === "cgroup2" && !v2) {
      v2 = m.mountPoint;
    }
  }
  const missingV1 = V1_CONTROLLERS.filter((c) => !v1[c]);
  if (missingV1.length === 0) {
    return { ok: true, layout: { version: 1, mounts: v1 as Record<V1Controller, string> } };
  }
  if (v2) {
    const available = readControllers(join(v2, "cgroup.controllers"));
    const missingV2 = V2_CONTROLLERS.filter((c) => !available.includes(c));
    if (missingV2.length === 0 && existsSync(join(v2, "cgroup.procs"))) {
      return { ok: true, layout: { version: 2, mount: v2 } };
    }
    const v1Part =
      missingV1.length < V1_CONTROLLERS.length ? `; v1 lacks ${missingV1.join(", ")}` : "";
    return {
      ok: false,
      missing: `cgroup v2 at ${v2} lacks the ${missingV2.join(", ")} controller(s)${v1Part}`,
    };
  }
  if (missingV1.length < V1_CONTROLLERS.length) {
    return { ok: false, missing: `cgroup v1 controller(s) ${missingV1.join(", ")} not mounted` };
  }
  return { ok: false, missing: "no cgroup filesystem is mounted (neither v1 nor v2)" };
}

function readControllers(path: string): string[] {
  try {
    return readFileSync(path, "utf8").trim().split(/\s+/);
  } catch {
    return [];
  }
}
