import { execFile } from "node:child_process";
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Files per MiB of disk: an empty file still costs an inode, which the size does not count. */
const INODES_PER_MB = 256;

/**
 * Whether this process may mount the tmpfs that bounds a sandbox's /host: root only. A
 * docker-group user's sandboxes get a sized /tmp and a plain /host (see docs/limits.md).
 */
export function canMountDisks(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Mounts a tmpfs of `sizeMb` on `dir` (made here, root's, 0700) on the host, before the
 * container starts: the engine binds directories inside it at /host and /tmp, so both share
 * `sizeMb` and the worker still reaches the guest's socket by its host path. Its pages are
 * charged to the memory cgroup of the writer: the container.
 */
export async function mountDisk(dir: string, sizeMb: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const options = `size=${sizeMb}m,nr_inodes=${sizeMb * INODES_PER_MB},mode=0700,nosuid,nodev`;
  await run("mount", ["-t", "tmpfs", "-o", options, "ol-sandbox-disk", dir]).catch(
    (error: unknown) => {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new Error(`mounting a ${sizeMb} MiB tmpfs on ${dir} failed: ${stderr || error}`, {
        cause: error,
      });
    },
  );
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
