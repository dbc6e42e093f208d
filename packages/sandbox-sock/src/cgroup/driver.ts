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
  readonly cpuPercent: number;
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
  readonly parentDirs: readonly string[];
  readonly #parents: Readonly<Record<V1Controller, string>>;

  constructor(mounts: Readonly<Record<V1Controller, string>>, parent: string) {
    const parents = {} as Record<V1Controller, string>;
    for (const c of V1_CONTROLLERS) parents[c] = join(mounts[c], parent);
    this.#parents = parents;
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
}

const V1_UNLIMITED = 2 ** 62;

class V1Cgroup implements SandboxCgroup {
  readonly name: string;
  readonly procsFiles: readonly string[];
  readonly #dirs: Readonly<Record<V1Controller, string>>;
  readonly #unique: readonly string[];
  #memsw: boolean | undefined;

  constructor(name: string, dirs: Readonly<Record<V1Controller, string>>) {
    this.name = name;
    this.#dirs = dirs;
    this.#unique = [...new Set(Object.values(dirs))];
    this.procsFiles = this.#unique.map((d) => join(d, "cgroup.procs"));
  }

  #file(c: V1Controller, file: string): string {
    return join(this.#dirs[c], file);
  }

  async setLimits(limits: CgroupLimits): Promise<void> {
    await this.setMemoryLimit(limits.memoryBytes);
    await write(this.#file("cpu", "cpu.cfs_period_us"), String(CFS_PERIOD_US));
    await write(this.#file("cpu", "cpu.cfs_quota_us"), String(cpuQuotaUs(limits.cpuPercent)));
    await write(this.#file("pids", "pids.max"), String(limits.procs));
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
    return { memoryBytes, memoryLimitBytes, cpuUsageUs: Math.round(cpuNs / 1000), pids };
  }

  async remove(): Promise<void> {
    for (const dir of this.#unique) await removeDir(dir);
  }
}

// --- v2 -------------------------------------------------------------------------------------

class V2Driver implements CgroupDriver {
  readonly version = 2;
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
}

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
    await write(this.#file("cpu.max"), `${cpuQuotaUs(limits.cpuPercent)} ${CFS_PERIOD_US}`);
    await write(this.#file("pids.max"), String(limits.procs));
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
