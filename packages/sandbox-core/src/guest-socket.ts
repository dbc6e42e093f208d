import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { GuestSocketUnsafeError } from "./errors.js";

/** Linux's O_PATH: an fd that names an inode without opening it (Node has no constant for it). */
const O_PATH = 0o10000000;

/**
 * A guest's listening socket, pinned by an `O_PATH` file descriptor. The guest owns the directory
 * its socket lives in and may replace `ol.sock` at any time (with a link to the host's
 * `docker.sock`, say); connecting by name would follow whatever is there now, as root. Connecting
 * through `/proc/self/fd/N` reaches the inode this object checked once, however the name changes
 * later: a guest that deletes, replaces or links its socket only breaks its own calls.
 */
export class GuestSocket {
  readonly #fd: number;
  #closed = false;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Pins `name` inside `dir` without following a link, neither at `dir` nor at `name`. Returns
   * `undefined` while nothing is there yet; throws `GuestSocketUnsafeError` when something other
   * than a socket is (a symbolic link, a file, a directory).
   */
  static open(dir: string, name: string): GuestSocket | undefined {
    let dirFd: number;
    try {
      dirFd = openSync(dir, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    } catch (error) {
      throw new GuestSocketUnsafeError(
        `the guest's socket directory ${dir} is not a directory the worker can use: ${(error as Error).message}`,
        { cause: error },
      );
    }
    let fd: number;
    try {
      // Relative to the pinned directory: the components above it are not looked up again.
      fd = openSync(`/proc/self/fd/${dirFd}/${name}`, O_PATH | constants.O_NOFOLLOW);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new GuestSocketUnsafeError(
        `the guest's socket ${name} cannot be opened: ${(error as Error).message}`,
        { cause: error },
      );
    } finally {
      closeSync(dirFd);
    }
    const stat = fstatSync(fd);
    if (!stat.isSocket()) {
      closeSync(fd);
      const what = stat.isSymbolicLink() ? "a symbolic link" : "not a socket";
      throw new GuestSocketUnsafeError(
        `the guest's socket ${name} is ${what}; the worker connects only to a socket the guest made in its own directory`,
      );
    }
    return new GuestSocket(fd);
  }

  /** What to connect to: the pinned inode, never the name in the guest's directory. */
  get path(): string {
    if (this.#closed) throw new Error("guest socket already closed");
    return `/proc/self/fd/${this.#fd}`;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Releases the fd. Only once nothing can connect through `path` any more: the number is
   * reused by the next open, and a late connect would reach whatever holds it then.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }
}
