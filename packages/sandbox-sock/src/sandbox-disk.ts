import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Where a sandbox's disk is mounted, inside its state dir; its /host and /tmp live in it. */
export const DISK_DIR = "disk";

/**
 * Lazily unmounts a sandbox's disk with the helper: its files go once no process of the
 * sandbox holds them, which after a destroy is at once, uncharging them from its cgroup.
 */
export async function unmountDisk(helper: string, dir: string): Promise<void> {
  await run(helper, ["umount", dir]);
}
