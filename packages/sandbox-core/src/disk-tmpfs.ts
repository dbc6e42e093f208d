import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Files per MiB of disk: every file costs an inode even when empty, and tmpfs would otherwise
 * allow half the host's RAM pages worth of them.
 */
const INODES_PER_MB = 256;

/**
 * Mounts a tmpfs of `sizeMb` on `dir` (made here, root's, 0700) in the host's mount namespace:
 * a sandbox's /host and /tmp, made inside it, then hold `sizeMb` together, and writes past it
 * fail with ENOSPC. Its pages are charged to the memory cgroup of whoever writes them: the
 * guest. mount(8), since Node has no mount(2); about 3 ms. Root only.
 */
export async function mountDiskTmpfs(dir: string, sizeMb: number): Promise<void> {
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
