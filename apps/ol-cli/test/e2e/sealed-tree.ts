import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";

/**
 * Asserts that an installed package tree is root's and writable by root only, with no set-id
 * bits, walking it without following symlinks. Returns how many entries it checked.
 */
export async function expectSealedTree(root: string): Promise<number> {
  let checked = 0;
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    checked++;
    expect([path, st.uid, st.gid]).toEqual([path, 0, 0]);
    if (st.isSymbolicLink()) return;
    expect([path, (st.mode & 0o7022).toString(8)]).toEqual([path, "0"]);
    if (st.isDirectory()) {
      for (const name of await readdir(path)) await visit(join(path, name));
    }
  };
  await visit(root);
  return checked;
}
