import type { Logger } from "@openlambda/sandbox-core";
import type { CgroupDriver, SandboxCgroup } from "./driver.js";

/**
 * Pre-made cgroups, so that a create does not pay for a mkdir in every hierarchy. Taking one
 * starts a background refill; a used cgroup is removed, never handed out again (its counters,
 * like oom_kill, would lie to the next sandbox).
 */
export class CgroupPool {
  readonly #driver: Pick<CgroupDriver, "create">;
  readonly #size: number;
  readonly #prefix: string;
  readonly #log: Logger;
  readonly #free: SandboxCgroup[] = [];
  #counter = 0;
  #refilling: Promise<void> | undefined;
  #closed = false;

  constructor(driver: Pick<CgroupDriver, "create">, size: number, prefix: string, log: Logger) {
    this.#driver = driver;
    this.#size = size;
    this.#prefix = prefix;
    this.#log = log;
  }

  get available(): number {
    return this.#free.length;
  }

  async take(): Promise<SandboxCgroup> {
    this.#closed = false;
    const cg = this.#free.shift() ?? (await this.#make());
    this.refill();
    return cg;
  }

  /** Fills the pool up to its size in the background; resolves when done. */
  refill(): Promise<void> {
    this.#refilling ??= (async () => {
      try {
        while (!this.#closed && this.#free.length < this.#size) {
          this.#free.push(await this.#make());
        }
      } catch (error) {
        this.#log.warn({ err: error }, "refilling the cgroup pool failed");
      } finally {
        this.#refilling = undefined;
      }
    })();
    return this.#refilling;
  }

  /** Removes every pooled cgroup. */
  async drain(): Promise<void> {
    this.#closed = true;
    await this.#refilling;
    const free = this.#free.splice(0);
    for (const cg of free) await cg.remove().catch(() => {});
  }

  async #make(): Promise<SandboxCgroup> {
    for (;;) {
      const name = `${this.#prefix}${(this.#counter++).toString(36)}`;
      try {
        return await this.#driver.create(name);
      } catch (error) {
        // A leftover of an earlier worker with the same pid: take the next name.
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
    }
  }
}
