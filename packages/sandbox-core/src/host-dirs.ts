import { chmod, lchown, lstat, mkdir, readdir, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * Makes a caller's scratch dir, and everything in it, belong to one sandbox's guest uid. Each
 * sandbox has a uid of its own, and what an earlier sandbox left there (a shared package
 * store) must be usable by the next. Links are re-owned themselves, never followed. Call it
 * while no guest of either uid runs in the dir.
 */
export async function handOverTree(path: string, uid: number, gid: number): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  await chownTree(path, uid, gid);
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  const st = await lstat(path);
  if (st.uid !== uid || st.gid !== gid) await lchown(path, uid, gid);
  if (!st.isDirectory()) return;
  const entries = await readdir(path);
  // Bounded parallelism: a package store can hold tens of thousands of entries.
  for (let i = 0; i < entries.length; i += 64) {
    await Promise.all(
      entries.slice(i, i + 64).map((name) => chownTree(join(path, name), uid, gid)),
    );
  }
}

/**
 * The guest reads code and packages as an unprivileged uid through a bind mount, which keeps
 * the directory's mode: a 0700 temp dir would be unreadable. Only the top directory is
 * opened up (o+rx); its files keep their own modes.
 */
export async function makeReadableByGuest(dir: string): Promise<void> {
  const st = await stat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((st.mode & 0o005) !== 0o005) await chmod(dir, (st.mode & 0o7777) | 0o055);
}
