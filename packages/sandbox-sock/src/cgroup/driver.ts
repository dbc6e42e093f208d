import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import {
  childDirs,
  killPids,
  pollUntil,
  readKeyed,
  readNumber,
  readPids,
  readText,
  removeDir,
  write,
} from "./files.js";
import { type CgroupLayout, V1_CONTROLLERS, type V1Controller, V2_CONTROLLERS } from "./layout.js";

export interface CgroupLimits {
  readonly memoryBytes: number;
  /** Omitted: the CPU quota is left alone (a grouped sandbox's is set by its group). */
  readonly cpuPercent?: number;
  readonly procs: number;
}

export interface CgroupStats {
  readonly memoryBytes: number;
  readonly memoryLimitBytes: number;
  readonly cpuUsageUs: number;
  readonly pids: number;
}

export type FreezerState = "frozen" | "freezing" | "thawed";

/** One sandbox's cgroup, whichever version: the file protocol behind a small interface. */
export interface SandboxCgroup {
  readonly name: string;
  /** The `cgroup.procs` files a process writes itself into to join (one per v1 hierarchy). */
  readonly procsFiles: readonly string[];
  setLimits(limits: CgroupLimits): Promise<void>;
  /** The sandbox's own CFS quota, percent of one core. */
  setCpuPercent(cpuPercent: number): Promise<void>;
  setMemoryLimit(bytes: number): Promise<void>;
  memoryLimit(): Promise<number>;
  memoryUsage(): Promise<number>;
  /** Freezes and resolves only once the kernel reports every task frozen. */
  freeze(timeoutMs: number): Promise<void>;
  thaw(timeoutMs: number): Promise<void>;
  /** What the kernel says right now. */
  freezerState(): Promise<FreezerState>;
  pids(): Promise<number[]>;
  /** Kills every task in the cgroup and waits until it is empty. */
  killAll(timeoutMs: number): Promise<void>;
  /** How many times the kernel's OOM killer killed a task of this cgroup. */
  oomKills(): Promise<number>;
  stats(): Promise<CgroupStats>;
  remove(): Promise<void>;
}

export interface CgroupDriver {
  readonly version: 1 | 2;
  /** The worker's parent cgroup directory in each hierarchy. */
  readonly parentDirs: readonly string[];
  /** Makes the parent (and on v2 enables the controllers down to it). */
  prepare(): Promise<void>;
  create(name: string): Promise<SandboxCgroup>;
  /** A handle on an existing child (for cleanup of leftovers). */
  open(name: string): SandboxCgroup;
  children(): Promise<string[]>;
  removeParent(): Promise<void>;
  /**
   * Makes a CPU group's cgroup `grp-<name>` under the parent, with the same weight as every
   * other group; one an earlier worker left is taken over.
   */
  makeGroup(name: string): Promise<void>;
  /** The whole group's CFS quota, percent of one core. */
  setGroupCpuPercent(name: string, cpuPercent: number): Promise<void>;
  removeGroup(name: string): Promise<void>;
  /**
   * A sandbox cgroup whose CPU is under group `group`. v1: `pooled` (a pre-made cgroup) keeps
   * memory, pids and freezer, and gets a cpu cgroup made under the group (its pooled one goes
   * on remove); it is `pooled` that is resolved. v2: one tree, so the whole cgroup is made under
   * the group (`pooled` must be undefined).
   */
  createInGroup(
    group: string,
    name: string,
    pooled: SandboxCgroup | undefined,
  ): Promise<SandboxCgroup>;
  /** Whether `joinGroup` works: v1, where the cpu hierarchy is apart from memory. */
  readonly canJoinGroup: boolean;
  /**
   * Moves a live sandbox's CPU under `group`: its tasks go to a new cpu cgroup there (frozen
   * meanwhile unless `frozen` says they already are, so that none forks past the move), and
   * the old one is removed. `cgroup` itself then points there (it is the sandbox's handle).
   */
  joinGroup(cgroup: SandboxCgroup, group: string, frozen: boolean): Promise<void>;
}

/** A CPU group's directory name under the worker's parent; never a pooled cgroup's (`sb-`). */
export function groupDirName(name: string): string {
  return `grp-${name}`;
}

const CFS_PERIOD_US = 100_000;

export function cpuQuotaUs(cpuPercent: number): number {
  return Math.max(1000, Math.round((CFS_PERIOD_US * cpuPercent) / 100));
}

/** `parent` is relative to each hierarchy's root, e.g. `ol-1a2b3c4d5e`. */
export function cgroupDriver(layout: CgroupLayout, parent: string): CgroupDriver {
  return layout.version === 1
    ? new V1Driver(layout.mounts, parent)
    : new V2Driver(layout.mount, parent);
}

// --- v1 -------------------------------------------------------------------------------------

/**
 * Kills every task with the cgroup frozen: frozen tasks cannot fork while they are killed one
 * by one, and the SIGKILLs are delivered on thaw.
 */
async function killFrozen(cgroup: SandboxCgroup, timeoutMs: number): Promise<void> {
  await cgroup.freeze(Math.min(timeoutMs, 1000)).catch(() => {});
  killPids(await cgroup.pids());
  await cgroup.thaw(timeoutMs).catch(() => {});
}

/** Kills what is left until the cgroup is empty (tasks that raced the first kill). */
async function killUntilEmpty(cgroup: SandboxCgroup, timeoutMs: number): Promise<void> {
  await pollUntil(
    async () => {
      const left = await cgroup.pids();
      killPids(left);
      return left.length === 0;
    },
    timeoutMs,
    `empty cgroup ${cgroup.name}`,
  );
}

class V1Driver implements CgroupDriver {
  readonly version = 1;
  readonly canJoinGroup = true;
  readonly parentDirs: readonly string[];
  readonly #parents: Readonly<Record<V1Controller, string>>;
  /** The controllers mounted with cpu (cpuacct, on most hosts): they move with it. */
  readonly #withCpu: readonly V1Controller[];

  constructor(mounts: Readonly<Record<V1Controller, string>>, parent: string) {
    const parents = {} as Record<V1Controller, string>;
    for (const c of V1_CONTROLLERS) parents[c] = join(mounts[c], parent);
    this.#parents = parents;
    this.#withCpu = V1_CONTROLLERS.filter((c) => mounts[c] === mounts.cpu);
    // cpu and cpuacct (or others) may share a hierarchy: each directory is made once.
    this.parentDirs = [...new Set(Object.values(parents))];
  }

  async prepare(): Promise<void> {
    for (const dir of this.parentDirs) await mkdir(dir, { recursive: true });
  }

  async create(name: string): Promise<SandboxCgroup> {
    const cg = this.open(name);
    for (const dir of this.parentDirs) await mkdir(join(dir, name));
    return cg;
  }

  open(name: string): SandboxCgroup {
    const dirs = {} as Record<V1Controller, string>;
    for (const c of V1_CONTROLLERS) dirs[c] = join(this.#parents[c], name);
    return new V1Cgroup(name, dirs);
  }

  async children(): Promise<string[]> {
    const all = new Set<string>();
    for (const dir of this.parentDirs) for (const n of await childDirs(dir)) all.add(n);
    return [...all];
  }

  async removeParent(): Promise<void> {
    for (const dir of this.parentDirs) await removeDir(dir);
  }

  #groupDir(name: string): string {
    return join(this.#parents.cpu, groupDirName(name));
  }

  async makeGroup(name: string): Promise<void> {
    const dir = this.#groupDir(name);
    await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
    await write(join(dir, "cpu.shares"), String(V1_GROUP_SHARES));
  }

  async setGroupCpuPercent(name: string, cpuPercent: number): Promise<void> {
    const dir = this.#groupDir(name);
    await write(join(dir, "cpu.cfs_period_us"), String(CFS_PERIOD_US));
    await write(join(dir, "cpu.cfs_quota_us"), String(cpuQuotaUs(cpuPercent)));
  }

  removeGroup(name: string): Promise<void> {
    return removeDir(this.#groupDir(name));
  }

  async createInGroup(
    group: string,
    name: string,
    pooled: SandboxCgroup | undefined,
  ): Promise<SandboxCgroup> {
    if (!(pooled instanceof V1Cgroup))
      throw new Error("cgroup v1: a grouped cgroup needs a pooled one");
    const dir = join(this.#groupDir(group), name);
    await mkdir(dir);
    pooled.moveCpu(dir, this.#withCpu, 0);
    return pooled;
  }

  async joinGroup(cgroup: SandboxCgroup, group: string, frozen: boolean): Promise<void> {
    if (!(cgroup instanceof V1Cgroup)) throw new Error("cgroup v1: not a v1 cgroup");
    const from = cgroup.cpuDir;
    const to = join(this.#groupDir(group), cgroup.name);
    await mkdir(to);
    /** Moves the tasks `src` lists now; resolves how many it saw. */
    const moveOnce = async (src: string, dst: string): Promise<number> => {
      const left = await readPids(join(src, "cgroup.procs"));
      for (const pid of left) {
        // A task that exited meanwhile is no longer there to move (ESRCH).
        await write(join(dst, "cgroup.procs"), String(pid)).catch((error) => {
          if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
        });
      }
      return left.length;
    };
    const move = (src: string, dst: string) =>
      pollUntil(async () => (await moveOnce(src, dst)) === 0, 2000, `move the tasks of ${src}`);
    let froze = false;
    try {
      // Unfrozen first: an idle sandbox (a ready runtime at hand-over, before any lambda code)
      // has nothing that forks, and a freeze and thaw cost tens of ms on the cold path. Only
      // tasks that keep appearing need the freezer to hold them while the rest move.
      let settled = frozen;
      for (let pass = 0; pass < 3 && !settled; pass++) settled = (await moveOnce(from, to)) === 0;
      if (!settled) {
        await cgroup.freeze(2000);
        froze = true;
      }
      await move(from, to);
    } catch (error) {
      await move(to, from).catch(() => {});
      await removeDir(to).catch(() => {});
      throw error;
    } finally {
      if (froze) await cgroup.thaw(2000);
    }
    // cpuacct, when it moves with cpu, counts from zero in the new cgroup.
    const offsetUs = this.#withCpu.includes("cpuacct")
      ? Math.round((await readNumber(join(from, "cpuacct.usage"))) / 1000)
      : 0;
    cgroup.moveCpu(to, this.#withCpu, offsetUs);
    // Off the hand-over's path; still listed as busy, it goes with the sandbox's cgroup instead.
    void removeDir(from).catch(() => {});
  }
}

const V1_UNLIMITED = 2 ** 62;
/** The default weight, written anyway: every group weighs the same as every other. */
const V1_GROUP_SHARES = 1024;

class V1Cgroup implements SandboxCgroup {
  readonly name: string;
  #dirs: Readonly<Record<V1Controller, string>>;
  #unique: readonly string[];
  /** Directories it no longer uses but still owns: removed with it. */
  #left: readonly string[] = [];
  /** CPU counted by a cpuacct cgroup it left behind, µs. */
  #cpuOffsetUs = 0;
  #memsw: boolean | undefined;

  constructor(name: string, dirs: Readonly<Record<V1Controller, string>>) {
    this.name = name;
    this.#dirs = dirs;
    this.#unique = [...new Set(Object.values(dirs))];
  }

  get procsFiles(): readonly string[] {
    return this.#unique.map((d) => join(d, "cgroup.procs"));
  }

  get cpuDir(): string {
    return this.#dirs.cpu;
  }

  /**
   * From now on `controllers` (cpu and what shares its hierarchy) are at `dir`; the directory
   * they were at is removed with the rest. `cpuOffsetUs`: what the old cpuacct counted.
   */
  moveCpu(dir: string, controllers: readonly V1Controller[], cpuOffsetUs: number): void {
    const old = this.#dirs.cpu;
    const dirs = { ...this.#dirs };
    for (const c of controllers) dirs[c] = dir;
    this.#dirs = dirs;
    this.#unique = [...new Set(Object.values(dirs))];
    this.#left = [...this.#left, old].filter((d) => !this.#unique.includes(d));
    this.#cpuOffsetUs += cpuOffsetUs;
  }

  #file(c: V1Controller, file: string): string {
    return join(this.#dirs[c], file);
  }

  async setLimits(limits: CgroupLimits): Promise<void> {
    await this.setMemoryLimit(limits.memoryBytes);
    if (limits.cpuPercent !== undefined) await this.setCpuPercent(limits.cpuPercent);
    await write(this.#file("pids", "pids.max"), String(limits.procs));
  }

  async setCpuPercent(cpuPercent: number): Promise<void> {
    await write(this.#file("cpu", "cpu.cfs_period_us"), String(CFS_PERIOD_US));
    await write(this.#file("cpu", "cpu.cfs_quota_us"), String(cpuQuotaUs(cpuPercent)));
  }

  async setMemoryLimit(bytes: number): Promise<void> {
    const limit = this.#file("memory", "memory.limit_in_bytes");
    const memsw = this.#file("memory", "memory.memsw.limit_in_bytes");
    // Without swap accounting (memsw) a limited guest could still spill into swap; with it, the
    // limit covers memory and swap together.
    this.#memsw ??= existsSync(memsw);
    if (!this.#memsw) {
      await write(limit, String(bytes));
      return;
    }
    // The kernel keeps memsw >= limit at every step: raise memsw first, lower it last.
    if (bytes > (await readNumber(limit))) {
      await write(memsw, String(bytes));
      await write(limit, String(bytes));
    } else {
      await write(limit, String(bytes));
      await write(memsw, String(bytes));
    }
  }

  async memoryLimit(): Promise<number> {
    const v = await readNumber(this.#file("memory", "memory.limit_in_bytes"));
    return v >= V1_UNLIMITED ? Number.POSITIVE_INFINITY : v;
  }

  memoryUsage(): Promise<number> {
    return readNumber(this.#file("memory", "memory.usage_in_bytes"));
  }

  async freeze(timeoutMs: number): Promise<void> {
    const state = this.#file("freezer", "freezer.state");
    await write(state, "FROZEN");
    await pollUntil(
      async () => {
        const now = await readText(state);
        // A freeze can stall in FREEZING (a task in an uninterruptible sleep): asking again retries.
        if (now === "FREEZING") await write(state, "FROZEN");
        return now === "FROZEN";
      },
      timeoutMs,
      `freeze cgroup ${this.name}`,
    );
  }

  async thaw(timeoutMs: number): Promise<void> {
    const state = this.#file("freezer", "freezer.state");
    await write(state, "THAWED");
    await pollUntil(
      async () => (await readText(state)) === "THAWED",
      timeoutMs,
      `thaw cgroup ${this.name}`,
    );
  }

  async freezerState(): Promise<FreezerState> {
    const s = await readText(this.#file("freezer", "freezer.state"));
    return s === "FROZEN" ? "frozen" : s === "FREEZING" ? "freezing" : "thawed";
  }

  async pids(): Promise<number[]> {
    const all = new Set<number>();
    for (const f of this.procsFiles) for (const p of await readPids(f)) all.add(p);
    return [...all];
  }

  async killAll(timeoutMs: number): Promise<void> {
    await killFrozen(this, timeoutMs);
    await killUntilEmpty(this, timeoutMs);
  }

  async oomKills(): Promise<number> {
    try {
      return (await readKeyed(this.#file("memory", "memory.oom_control"))).get("oom_kill") ?? 0;
    } catch {
      return 0;
    }
  }

  async stats(): Promise<CgroupStats> {
    const [memoryBytes, memoryLimitBytes, cpuNs, pids] = await Promise.all([
      this.memoryUsage(),
      this.memoryLimit(),
      readNumber(this.#file("cpuacct", "cpuacct.usage")),
      readNumber(this.#file("pids", "pids.current")),
    ]);
    const cpuUsageUs = Math.round(cpuNs / 1000) + this.#cpuOffsetUs;
    return { memoryBytes, memoryLimitBytes, cpuUsageUs, pids };
  }

  async remove(): Promise<void> {
    for (const dir of [...this.#unique, ...this.#left]) await removeDir(dir);
  }
}

// --- v2 -------------------------------------------------------------------------------------

class V2Driver implements CgroupDriver {
  readonly version = 2;
  /** One tree: moving tasks would leave their memory charged to the cgroup they left. */
  readonly canJoinGroup = false;
  readonly parentDirs: readonly string[];
  readonly #mount: string;
  readonly #parent: string;

  constructor(mount: string, parent: string) {
    this.#mount = mount;
    this.#parent = join(mount, parent);
    this.parentDirs = [this.#parent];
  }

  async prepare(): Promise<void> {
    await mkdir(this.#parent, { recursive: true });
    // Controllers must be enabled at every level from the root down to the sandboxes' parent.
    const enable = V2_CONTROLLERS.map((c) => `+${c}`).join(" ");
    const rel = this.#parent.slice(this.#mount.length).split("/").filter(Boolean);
    let dir = this.#mount;
    await write(join(dir, "cgroup.subtree_control"), enable);
    for (const part of rel) {
      dir = join(dir, part);
      await write(join(dir, "cgroup.subtree_control"), enable);
    }
  }

  async create(name: string): Promise<SandboxCgroup> {
    await mkdir(join(this.#parent, name));
    return this.open(name);
  }

  open(name: string): SandboxCgroup {
    return new V2Cgroup(name, join(this.#parent, name));
  }

  children(): Promise<string[]> {
    return childDirs(this.#parent);
  }

  removeParent(): Promise<void> {
    return removeDir(this.#parent);
  }

  #groupDir(name: string): string {
    return join(this.#parent, groupDirName(name));
  }

  async makeGroup(name: string): Promise<void> {
    const dir = this.#groupDir(name);
    await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
    // Its sandboxes' cgroups are below it and need the controllers from it.
    await write(join(dir, "cgroup.subtree_control"), V2_CONTROLLERS.map((c) => `+${c}`).join(" "));
    await write(join(dir, "cpu.weight"), String(V2_GROUP_WEIGHT));
  }

  setGroupCpuPercent(name: string, cpuPercent: number): Promise<void> {
    return write(
      join(this.#groupDir(name), "cpu.max"),
      `${cpuQuotaUs(cpuPercent)} ${CFS_PERIOD_US}`,
    );
  }

  removeGroup(name: string): Promise<void> {
    return removeDir(this.#groupDir(name));
  }

  async createInGroup(
    group: string,
    name: string,
    pooled: SandboxCgroup | undefined,
  ): Promise<SandboxCgroup> {
    if (pooled) throw new Error("cgroup v2: a grouped cgroup is made whole under its group");
    const dir = join(this.#groupDir(group), name);
    await mkdir(dir);
    return new V2Cgroup(name, dir);
  }

  joinGroup(): Promise<void> {
    return Promise.reject(new Error("cgroup v2: a live sandbox cannot move into a CPU group"));
  }
}

/** The default weight, written anyway: every group weighs the same as every other. */
const V2_GROUP_WEIGHT = 100;

class V2Cgroup implements SandboxCgroup {
  readonly name: string;
  readonly procsFiles: readonly string[];
  readonly #dir: string;

  constructor(name: string, dir: string) {
    this.name = name;
    this.#dir = dir;
    this.procsFiles = [join(dir, "cgroup.procs")];
  }

  #file(file: string): string {
    return join(this.#dir, file);
  }

  async setLimits(limits: CgroupLimits): Promise<void> {
    await this.setMemoryLimit(limits.memoryBytes);
    // No swap past the memory limit (the file exists only when the kernel has swap accounting).
    if (existsSync(this.#file("memory.swap.max"))) await write(this.#file("memory.swap.max"), "0");
    if (limits.cpuPercent !== undefined) await this.setCpuPercent(limits.cpuPercent);
    await write(this.#file("pids.max"), String(limits.procs));
  }

  setCpuPercent(cpuPercent: number): Promise<void> {
    return write(this.#file("cpu.max"), `${cpuQuotaUs(cpuPercent)} ${CFS_PERIOD_US}`);
  }

  setMemoryLimit(bytes: number): Promise<void> {
    return write(this.#file("memory.max"), String(bytes));
  }

  memoryLimit(): Promise<number> {
    return readNumber(this.#file("memory.max"));
  }

  memoryUsage(): Promise<number> {
    return readNumber(this.#file("memory.current"));
  }

  async #frozen(): Promise<boolean> {
    return (await readKeyed(this.#file("cgroup.events"))).get("frozen") === 1;
  }

  async freeze(timeoutMs: number): Promise<void> {
    await write(this.#file("cgroup.freeze"), "1");
    await pollUntil(() => this.#frozen(), timeoutMs, `freeze cgroup ${this.name}`);
  }

  async thaw(timeoutMs: number): Promise<void> {
    await write(this.#file("cgroup.freeze"), "0");
    await pollUntil(async () => !(await this.#frozen()), timeoutMs, `thaw cgroup ${this.name}`);
  }

  async freezerState(): Promise<FreezerState> {
    if (await this.#frozen()) return "frozen";
    return (await readText(this.#file("cgroup.freeze"))) === "1" ? "freezing" : "thawed";
  }

  pids(): Promise<number[]> {
    return readPids(this.#file("cgroup.procs"));
  }

  async killAll(timeoutMs: number): Promise<void> {
    if (existsSync(this.#file("cgroup.kill"))) {
      await write(this.#file("cgroup.kill"), "1");
    } else {
      // Kernels before 5.14 have no cgroup.kill.
      await killFrozen(this, timeoutMs);
    }
    await killUntilEmpty(this, timeoutMs);
  }

  async oomKills(): Promise<number> {
    try {
      return (await readKeyed(this.#file("memory.events"))).get("oom_kill") ?? 0;
    } catch {
      return 0;
    }
  }

  async stats(): Promise<CgroupStats> {
    const [memoryBytes, memoryLimitBytes, cpu, pids] = await Promise.all([
      this.memoryUsage(),
      this.memoryLimit(),
      readKeyed(this.#file("cpu.stat")),
      readNumber(this.#file("pids.current")),
    ]);
    return { memoryBytes, memoryLimitBytes, cpuUsageUs: cpu.get("usage_usec") ?? 0, pids };
  }

  remove(): Promise<void> {
    return removeDir(this.#dir);
  }
}
