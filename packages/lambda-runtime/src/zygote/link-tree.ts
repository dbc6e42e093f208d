import { copyFile, link, lstat, mkdir, readdir, readlink, symlink } from "node:fs/promises";
import { join } from "node:path";

/**
 * Recreates `src` under `dst` with hard links (a copy across filesystems), symlinks kept as they
 * are: a lambda's code or install appears in a zygote's directories in a few milliseconds, and
 * the sandbox mounts them read-only so the shared inodes are never written.
 */
export async function linkTree(
  src: string,
  dst: string,
  skip: ReadonlySet<string> = new Set(),
): Promise<void> {
  await mkdir(dst, { recursive: true, mode: 0o755 });
  for (const entry of await readdir(src, { withFileTypes: true })) {
    if (skip.has(entry.name)) continue;
    const from = join(src, entry.name);
    const to = join(dst, entry.name);
    if (entry.isDirectory()) {
      await linkTree(from, to);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(from), to);
    } else if (entry.isFile()) {
      await link(from, to).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== "EXDEV" && error.code !== "EPERM") throw error;
        await copyFile(from, to);
      });
    } else {
      // Sockets, FIFOs and devices never belong in code.
      const st = await lstat(from);
      throw new Error(`${from}: unexpected file type (mode ${st.mode.toString(8)})`);
    }
  }
}
