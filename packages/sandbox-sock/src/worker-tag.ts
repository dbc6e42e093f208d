import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import { join, resolve } from "node:path";

/**
 * The tag on everything a backend makes for one work dir: cgroup parent names, helper argv
 * (`--tag`). Derived from the work dir's real path, so `forceCleanup(dir)` finds the leftovers
 * of a worker that was SIGKILLed without reading any state it may not have written.
 */
export function workerTag(workDir: string): string {
  let real = resolve(workDir);
  try {
    real = realpathSync(real);
  } catch {
    // Not made yet: the resolved path is what the backend will make.
  }
  return `ol-${createHash("sha256").update(real).digest("hex").slice(0, 10)}`;
}

/** Per-sandbox state (backend-made scratch, /tmp, log) lives under here. */
export function sandboxesDir(workDir: string): string {
  return join(resolve(workDir), "sandboxes");
}
