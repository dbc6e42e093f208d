import { createHash } from "node:crypto";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";

/**
 * A cheap stand-in for a content hash of a directory tree, used when the caller gives a base
 * directory without its hash: every entry's path, type, mode, size, mtime and link target.
 * Reading every byte of a several-hundred-MiB base on each start would cost seconds; any
 * rebuild of the base changes mtimes, which is all "rebuild only when the base changes" needs.
 */
export async function treeFingerprint(root: string): Promise<string> {
  const hash = createHash("sha256");
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      const full = join(root, path);
      const st = await lstat(full);
      const link = entry.isSymbolicLink() ? await readlink(full) : "";
      hash.update(`${path}\0${st.mode}\0${st.size}\0${Math.trunc(st.mtimeMs)}\0${link}\n`);
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk("");
  return hash.digest("hex");
}
