import { MemoryPoolExhaustedError } from "../errors.js";

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

  /** Reserves `mb`, waiting for memory in FIFO order; resolves to the release function. */
  async acquire(mb: number): Promise<() => void> {
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
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#usedMb -= mb;
      this.#wake();
    };
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
