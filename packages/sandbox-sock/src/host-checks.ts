import { existsSync } from "node:fs";
import { join } from "node:path";
import { BackendUnavailableError } from "@openlambda/sandbox-core";
import { BASE_MOUNTPOINTS } from "./base-rootfs.js";
import { type CgroupLayout, detectCgroupLayout } from "./cgroup/layout.js";
import { readMountInfo } from "./mountinfo.js";

/**
 * Everything SOCK needs from the host, checked at start so that a missing piece is one clear
 * `OL_BACKEND_UNAVAILABLE` error instead of a failed mount at the first request.
 */
export function checkHost(baseDir: string): CgroupLayout {
  const missing: string[] = [];
  if (process.platform !== "linux") {
    throw new BackendUnavailableError(
      `the SOCK backend needs Linux (namespaces, cgroups); this is ${process.platform}. Use the docker backend.`,
    );
  }
  if (process.getuid?.() !== 0) {
    missing.push(
      `root (running as uid ${process.getuid?.()}: mounts, namespaces and cgroups need it)`,
    );
  }
  const cgroups = detectCgroupLayout(readMountInfo());
  if (!cgroups.ok) missing.push(`cgroups (${cgroups.missing})`);
  const lacking = BASE_MOUNTPOINTS.filter((d) => !existsSync(join(baseDir, d)));
  if (lacking.length > 0) {
    missing.push(
      `a base root filesystem at ${baseDir} (it lacks ${lacking.map((d) => `/${d}`).join(", ")}; build one with buildBaseRootfs)`,
    );
  }
  if (missing.length > 0 || !cgroups.ok) {
    throw new BackendUnavailableError(
      `the SOCK backend cannot run here: missing ${missing.join("; ")}`,
    );
  }
  return cgroups.layout;
}
