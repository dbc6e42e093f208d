import { randomBytes } from "node:crypto";
import { constants, lstatSync, type Stats } from "node:fs";
import {
  chmod,
  chown,
  copyFile,
  lchown,
  lstat,
  mkdir,
  readdir,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { join, relative } from "node:path";
import { DependencyInstallError } from "../errors.js";

/** Written last into a finished install: without it (or unsealed) a directory is not installed. */
export const INSTALLED_MARKER = ".ol-installed";

/** Who owns a sealed tree: root, which no guest is, whatever uid a sandbox runs as. */
const OWNER = 0;
/** How many entries of one directory are sealed at once (bounded, so no fd or threadpool flood). */
const BATCH = 32;

/**
 * Makes an installed tree root-owned and read-only to everyone else: directories 0755, files
 * 0644 (0755 when any execute bit was set), no setuid, setgid or sticky bits, symlinks re-owned
 * but never followed. A file with other hard links is replaced by a copy of its own first: its
 * inode may also sit in a shared store that later installers are handed, and re-owning the
 * store would then re-own the file. Anything that is not a file, directory or symlink (a FIFO,
 * a socket, a device) is refused: an installed package never holds one.
 *
 * Meant for a tree whose installer sandbox is gone, under a directory only root can write.
 * The walk goes top-down and locks each directory before reading it, so even a process that
 * still had a handle on the tree could not swap an entry for a symlink between the check and
 * the change.
 */
export async function sealTree(root: string): Promise<void> {
  const top = await lstat(root);
  if (!top.isDirectory()) {
    throw new DependencyInstallError(`the installed tree ${root} is not a directory`);
  }
  const dirs = [root];
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    await seal(dir, 0o755);
    const names = await readdir(dir);
    for (let i = 0; i < names.length; i += BATCH) {
      await Promise.all(
        names.slice(i, i + BATCH).map(async (name) => {
          const path = join(dir, name);
          const st = await lstat(path);
          if (st.isSymbolicLink()) await lchown(path, OWNER, OWNER);
          else if (st.isDirectory()) dirs.push(path);
          else if (st.isFile()) {
            if (st.nlink > 1) await unshare(path);
            await seal(path, st.mode & 0o111 ? 0o755 : 0o644);
          } else {
            throw new DependencyInstallError(
              `the installed tree holds ${relative(root, path)}, ${kindOf(st)}: an installed package holds only files, directories and symlinks`,
            );
          }
        }),
      );
    }
  }
}

/** `path` is no symlink (lstat said so) and its directory is already locked: chmod cannot be led elsewhere. */
async function seal(path: string, mode: number): Promise<void> {
  // Mode first: the file is never root's while it still has bits the guest chose.
  await chmod(path, mode);
  await lchown(path, OWNER, OWNER);
}

/** Gives a hard-linked file an inode of its own (its directory is locked: no one else renames in it). */
async function unshare(path: string): Promise<void> {
  const copy = `${path}.ol-copy-${randomBytes(4).toString("hex")}`;
  await copyFile(path, copy, constants.COPYFILE_EXCL);
  await rename(copy, path);
}

function kindOf(st: Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  return "a special file";
}

/** Whether `dir` holds a finished install: sealed (root's, not writable by others) and marked. */
export function isSealedInstall(dir: string): boolean {
  try {
    const top = lstatSync(dir);
    const marker = lstatSync(join(dir, INSTALLED_MARKER));
    return (
      top.isDirectory() &&
      top.uid === OWNER &&
      (top.mode & 0o022) === 0 &&
      marker.isFile() &&
      marker.uid === OWNER
    );
  } catch {
    return false;
  }
}

/**
 * A directory installs live in: root's, 0755. An earlier version handed it to the guest uid
 * (as an installer's scratch dir); it is taken back, so no guest can rename an install away
 * and plant another under its name.
 */
export async function ensureRootOwnedDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new DependencyInstallError(`${dir} is not a directory`);
  if (st.uid !== OWNER || st.gid !== OWNER) await chown(dir, OWNER, OWNER);
  if ((st.mode & 0o7777) !== 0o755) await chmod(dir, 0o755);
}

export interface PublishOptions {
  /** The finished install, where the (now dead) installer left it. */
  readonly installed: string;
  /** A free name beside `target`, in a directory only root can write. */
  readonly staging: string;
  /** Where the install goes; whatever was there is replaced. */
  readonly target: string;
  /** A last look at the sealed tree before it is marked installed; throws to refuse it. */
  readonly check?: (dir: string) => Promise<void>;
}

/**
 * Puts a finished install in place: moves it out of the installer's scratch dir (where the
 * guest could still rename things) to `staging`, seals it, marks it and renames it to
 * `target`. Nothing is left behind on failure, and nothing half-sealed is ever in place.
 */
export async function publishInstall(opts: PublishOptions): Promise<void> {
  try {
    await rename(opts.installed, opts.staging);
    try {
      await sealTree(opts.staging);
    } catch (error) {
      if (error instanceof DependencyInstallError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      throw new DependencyInstallError(
        `making the installed tree root-owned and read-only failed: ${(error as Error).message}${code === "EPERM" ? " (the worker must run as root)" : ""}`,
        { cause: error },
      );
    }
    await opts.check?.(opts.staging);
    const marker = join(opts.staging, INSTALLED_MARKER);
    // Whatever the installer left under the marker's name goes; the marker is made afresh, so
    // writing it never follows a link.
    await rm(marker, { recursive: true, force: true });
    await writeFile(marker, `${new Date().toISOString()}\n`, { flag: "wx", mode: 0o644 });
    await rm(opts.target, { recursive: true, force: true });
    await rename(opts.staging, opts.target);
  } catch (error) {
    await rm(opts.staging, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
}
