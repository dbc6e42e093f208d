/** OpenLambda's /stats: per-name call counts and average milliseconds. */
export class Timers {
  readonly #counts = new Map<string, number>();
  readonly #totals = new Map<string, number>();

  record(name: string, ms: number): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
    this.#totals.set(name, (this.#totals.get(name) ?? 0) + ms);
  }

  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.record(name, performance.now() - start);
    }
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, count] of this.#counts) {
      out[`${name}.cnt`] = count;
      out[`${name}.ms-avg`] = Math.round(((this.#totals.get(name) ?? 0) / count) * 1000) / 1000;
    }
    return out;
  }

  count(name: string): number {
    return this.#counts.get(name) ?? 0;
  }
}
