import type { Sandbox } from "@openlambda/sandbox-core";
import { MemoryPoolExhaustedError } from "../errors.js";

/**
 * Memory reserved in a `MemoryPool` for one sandbox. Exactly one owner holds it at a time; the
 * memory returns to the pool once, however many paths (destroy, crash, eviction, shutdown) end
 * the sandbox. Owners bind it to their sandbox's death rather than decide from their own
 * bookkeeping whether the memory is theirs to give back: that inference is what leaked.
 */
export class Reservation {
  readonly mb: number;
  #free: (() => void) | undefined;

  constructor(mb: number, free: () => void) {
    this.mb = mb;
    this.#free = free;
  }

  /** Released, or handed over to a new owner (this handle then frees nothing). */
  get released(): boolean {
    return this.#free === undefined;
  }

  /** Gives the memory back; later calls (and calls on a handed-over handle) do nothing. */
  release(): void {
    const free = this.#free;
    this.#free = undefined;
    free?.();
  }

  /** Releases when `sandbox` dies, whoever or whatever ends it. */
  bindTo(sandbox: Pick<Sandbox, "dead">): this {
    void sandbox.dead.then(
      () => this.release(),
      () => this.release(),
    );
    return this;
  }

  /**
   * Moves the reservation to a new owner: the returned handle owns the memory, this one (and any
   * binding made through it) no longer frees anything. The new owner binds it to its sandbox.
   */
  handOver(): Reservation {
    const free = this.#free;
    if (!free) throw new Error("memory pool: hand-over of a released reservation");
    this.#free = undefined;
    return new Reservation(this.mb, free);
  }
}

interface Waiter {
  readonly mb: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The memory every sandbox together may use (`mem_pool_mb`). A create reserves its sandbox's
 * memory limit first and waits, in order, while the pool is short; it never overcommits. While
 * anyone waits, `onPressure` is asked to free memory (the evictor).
 */
export class MemoryPool {
  readonly totalMb: number;
  #usedMb = 0;
  readonly #waiters: Waiter[] = [];
  readonly #onPressure: (neededMb: number) => void;
  readonly #maxWaitMs: number;

  constructor(totalMb: number, onPressure: (neededMb: number) => void, maxWaitMs = 60_000) {
    this.totalMb = totalMb;
    this.#onPressure = onPressure;
    this.#maxWaitMs = maxWaitMs;
  }

  get usedMb(): number {
    return this.#usedMb;
  }

  get freeMb(): number {
    return this.totalMb - this.#usedMb;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** Reserves `mb`, waiting for memory in FIFO order. */
  async acquire(mb: number): Promise<Reservation> {
    if (mb > this.totalMb) {
      throw new MemoryPoolExhaustedError(
        `a sandbox needs ${mb} MiB but the whole memory pool (mem_pool_mb) is ${this.totalMb} MiB`,
      );
    }
    if (this.#waiters.length === 0 && this.freeMb >= mb) {
      this.#usedMb += mb;
    } else {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(
            new MemoryPoolExhaustedError(
              `waited ${this.#maxWaitMs} ms for ${mb} MiB of the memory pool; ${this.freeMb} MiB free of ${this.totalMb}`,
            ),
          );
        }, this.#maxWaitMs);
        const waiter: Waiter = { mb, resolve, reject, timer };
        this.#waiters.push(waiter);
        this.#onPressure(this.#neededMb());
      });
    }
    return new Reservation(mb, () => {
      this.#usedMb -= mb;
      this.#wake();
    });
  }

  /** MiB the waiters need beyond what is free (0 when nobody waits). */
  get neededMb(): number {
    return this.#waiters.length === 0 ? 0 : Math.max(0, this.#neededMb());
  }

  #neededMb(): number {
    return this.#waiters.reduce((sum, w) => sum + w.mb, 0) - this.freeMb;
  }

  #wake(): void {
    while (this.#waiters.length > 0) {
      const next = this.#waiters[0] as Waiter;
      if (this.freeMb < next.mb) {
        this.#onPressure(this.#neededMb());
        return;
      }
      this.#waiters.shift();
      clearTimeout(next.timer);
      this.#usedMb += next.mb;
      next.resolve();
    }
  }
}
