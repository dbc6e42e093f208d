import { execFile } from "node:child_process";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Whether this process may mount the tmpfs that bounds a sandbox's /host: root only. A
 * docker-group user's sandboxes get a sized /tmp and a plain /host (see docs/limits.md).
 */
export function canMountDisks(): boolean {
  return process.getuid?.() === 0;
}

/** Lazily unmounts `dir` when something is mounted there; a plain directory is left alone. */
export async function unmountDisk(dir: string): Promise<void> {
  if (!(await isMountPoint(dir))) return;
  await run("umount", ["-l", dir]);
}

/** A mount point sits on another device than its parent. */
async function isMountPoint(dir: string): Promise<boolean> {
  const [self, parent] = await Promise.all([
    stat(dir).catch(() => undefined),
    stat(dirname(dir)).catch(() => undefined),
  ]);
  return self !== undefined && parent !== undefined && self.dev !== parent.dev;
}
