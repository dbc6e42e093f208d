import { constants } from "node:fs";
import { open, realpath } from "node:fs/promises";
import { sep } from "node:path";

/** The most a build reads of one source file: far beyond real code, short of the worker's memory. */
export const MAX_SOURCE_BYTES = 32 * 1024 * 1024;

/** Whether `path` is `root` or below it (both absolute and normalised, no symlink resolution). */
export function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The real path of `path` (every symlink resolved) when it lies inside `root`, which must itself
 * be a real path; undefined when it leads elsewhere or does not exist.
 */
export async function realPathInside(root: string, path: string): Promise<string | undefined> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return undefined;
  }
  return isInside(root, real) ? real : undefined;
}

export type ReadOutcome =
  | { readonly ok: true; readonly path: string; readonly contents: Uint8Array }
  | { readonly ok: false; readonly why: "outside" | "not-a-file" | "too-large" };

/**
 * Reads a regular file that really lies inside `root`. The file is opened without following a
 * final symlink and checked on the open descriptor, so what is read is what was checked; and
 * without blocking, so a FIFO or a terminal planted in the tree cannot stall the worker.
 */
export async function readContainedFile(root: string, path: string): Promise<ReadOutcome> {
  const real = await realPathInside(root, path);
  if (!real) return { ok: false, why: "outside" };
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return { ok: false, why: "outside" };
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { ok: false, why: "not-a-file" };
    if (st.size > MAX_SOURCE_BYTES) return { ok: false, why: "too-large" };
    return { ok: true, path: real, contents: await handle.readFile() };
  } finally {
    await handle.close();
  }
}
