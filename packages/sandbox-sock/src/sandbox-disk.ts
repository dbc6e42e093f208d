import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Where a sandbox's disk is mounted, inside its state dir; its /host and /tmp live in it. */
export const DISK_DIR = "disk";

/**
 * Files per MiB of disk: every file costs an inode even when empty, and tmpfs would otherwise
 * allow half the host's RAM pages worth of them.
 */
const INODES_PER_MB = 256;

/**
 * Mounts a tmpfs of `sizeMb` on `dir` (made here, root's, 0700) in the host's mount namespace,
 * so that the sandbox's /host and /tmp, made inside it, hold `sizeMb` together and writes past
 * it fail with ENOSPC. Its pages are charged to the memory cgroup of whoever writes them: the
 * guest. mount(8) because Node has no mount(2); about 3 ms a create.
 */
export async function mountDisk(dir: string, sizeMb: number): Promise<void> {
  await mkdir(dir, { mode: 0o700 });
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

/**
 * Lazily unmounts a sandbox's disk with the helper: its files go once no process of the
 * sandbox holds them, which after a destroy is at once, uncharging them from its cgroup.
 */
export async function unmountDisk(helper: string, dir: string): Promise<void> {
  await run(helper, ["umount", dir]);
}
