import type { CpuGroup, Logger } from "@openlambda/sandbox-core";
import type { CgroupDriver, SandboxCgroup } from "./driver.js";

interface Member {
  readonly cgroup: SandboxCgroup;
  /** The sandbox's own `limits.cpuPercent`. */
  readonly ownPercent: number;
}

interface Group {
  /** Every change to the group runs in turn: it is made, changed and removed in one order. */
  queue: Promise<unknown>;
  /** Sandboxes holding it (made, being made, or joining). */
  holders: number;
  exists: boolean;
  cpuPercent: number;
  readonly members: Set<Member>;
}

/** One sandbox's hold on its group; `release` once its cgroup is gone. */
export interface GroupHold {
  readonly name: string;
  /**
   * Sets the sandbox's own quota under the group (its own percent, at most the group's: v1
   * refuses a child's quota above its parent's) and keeps it so when the group's changes.
   */
  track(cgroup: SandboxCgroup, ownPercent: number): Promise<void>;
  /** Drops the hold; the last one removes the group's cgroup. Never rejects. */
  release(): Promise<void>;
}

/**
 * The CPU groups of one backend: a group's cgroup is made with its first sandbox and removed
 * with its last. Its quota follows the latest spec that names it (a lambda whose cap changed
 * with a new version: the old version's sandboxes drain under the new cap).
 */
export class CpuGroups {
  readonly #driver: CgroupDriver;
  readonly #log: Logger;
  readonly #groups = new Map<string, Group>();

  constructor(driver: CgroupDriver, log: Logger) {
    this.#driver = driver;
    this.#log = log;
  }

  async hold(spec: CpuGroup): Promise<GroupHold> {
    const { name } = spec;
    let group = this.#groups.get(name);
    if (!group) {
      group = {
        queue: Promise.resolve(),
        holders: 0,
        exists: false,
        cpuPercent: spec.cpuPercent,
        members: new Set(),
      };
      this.#groups.set(name, group);
    }
    const g = group;
    g.holders++;
    try {
      await this.#serial(g, async () => {
        if (!g.exists) {
          await this.#driver.makeGroup(name);
          g.exists = true;
          g.cpuPercent = spec.cpuPercent;
          await this.#driver.setGroupCpuPercent(name, spec.cpuPercent);
        } else if (g.cpuPercent !== spec.cpuPercent) {
          await this.#change(name, g, spec.cpuPercent);
        }
      });
    } catch (error) {
      await this.#drop(name, g, undefined);
      throw error;
    }
    let member: Member | undefined;
    let released = false;
    return {
      name,
      track: (cgroup, ownPercent) =>
        this.#serial(g, async () => {
          const m = { cgroup, ownPercent };
          await cgroup.setCpuPercent(Math.min(ownPercent, g.cpuPercent));
          if (member) g.members.delete(member);
          member = m;
          g.members.add(m);
        }),
      release: async () => {
        if (released) return;
        released = true;
        await this.#drop(name, g, member);
      },
    };
  }

  /** A new quota for a live group: on v1 its children must never be above it, even briefly. */
  async #change(name: string, g: Group, cpuPercent: number): Promise<void> {
    const lower = cpuPercent < g.cpuPercent;
    const clampMembers = async () => {
      for (const m of g.members) await m.cgroup.setCpuPercent(Math.min(m.ownPercent, cpuPercent));
    };
    if (lower) await clampMembers();
    await this.#driver.setGroupCpuPercent(name, cpuPercent);
    g.cpuPercent = cpuPercent;
    if (!lower) await clampMembers();
  }

  async #drop(name: string, g: Group, member: Member | undefined): Promise<void> {
    await this.#serial(g, async () => {
      if (member) g.members.delete(member);
      g.holders--;
      if (g.holders > 0 || !g.exists) return;
      await this.#driver.removeGroup(name);
      g.exists = false;
    }).catch((error: unknown) => {
      // Left for the backend's cleanup (force cleanup sweeps the parent recursively).
      this.#log.warn({ err: error, cpuGroup: name }, "removing a CPU group's cgroup failed");
    });
    if (g.holders === 0 && !g.exists && this.#groups.get(name) === g) this.#groups.delete(name);
  }

  #serial<T>(g: Group, op: () => Promise<T>): Promise<T> {
    const next = g.queue.then(op, op);
    g.queue = next.catch(() => {});
    return next;
  }
}
