import { InvalidSpecError, SandboxCreateError } from "./errors.js";

/** A range of host uids handed to sandboxes, one each: `first` .. `first + count - 1`. */
export interface UidRange {
  readonly first: number;
  readonly count: number;
}

/** Far from the uids of a host's own accounts (system, users, Docker's userns remaps at 100000). */
export const DEFAULT_UID_RANGE: UidRange = { first: 1_000_000, count: 65_536 };

/** 2^32 - 1 is "no uid" to the kernel (chown's "unchanged"); stay below it. */
const LAST_VALID_UID = 4_294_967_294;

/**
 * Gives each live sandbox a uid no other live sandbox has, so that plain Unix permissions
 * separate tenants too (as Firecracker's jailer does). A released uid is handed out again as
 * late as possible: the cursor moves on round the range, skipping uids still in use.
 */
export class UidAllocator {
  readonly range: UidRange;
  readonly #inUse = new Set<number>();
  #next: number;

  constructor(range: UidRange = DEFAULT_UID_RANGE) {
    const { first, count } = range;
    if (!Number.isSafeInteger(first) || first < 1 || !Number.isSafeInteger(count) || count < 1) {
      throw new InvalidSpecError(
        `uid range: first and count must be positive integers (got first ${first}, count ${count})`,
      );
    }
    if (first + count - 1 > LAST_VALID_UID) {
      throw new InvalidSpecError(
        `uid range: ${first} + ${count} passes the largest uid ${LAST_VALID_UID}`,
      );
    }
    this.range = { first, count };
    this.#next = first;
  }

  get inUse(): number {
    return this.#inUse.size;
  }

  /** A uid of its own for one sandbox; give it back with `release`. */
  take(): number {
    const { first, count } = this.range;
    if (this.#inUse.size >= count) {
      throw new SandboxCreateError(
        `every uid of the range ${first}..${first + count - 1} is in use by a live sandbox`,
      );
    }
    for (;;) {
      const uid = this.#next;
      this.#next = uid + 1 >= first + count ? first : uid + 1;
      if (!this.#inUse.has(uid)) {
        this.#inUse.add(uid);
        return uid;
      }
    }
  }

  release(uid: number): void {
    this.#inUse.delete(uid);
  }
}
