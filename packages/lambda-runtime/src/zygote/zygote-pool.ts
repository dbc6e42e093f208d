import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { lstat, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Logger,
  type NetworkMode,
  type Sandbox,
  type SandboxBackend,
  type SandboxLimits,
  type SandboxSpec,
  silentLogger,
} from "@openlambda/sandbox-core";
import { satisfies, validRange } from "semver";
import { request } from "undici";
import type { ReadySandbox } from "../manager/instance.js";
import type { MemoryPool, Reservation } from "../manager/memory-pool.js";
import type { Timers } from "../manager/timers.js";
import {
  DEPS_PACKAGE,
  type InstalledDeps,
  type NodeDepsInstaller,
  SYSTEM_CA_BUNDLE,
} from "../prepare/node-deps.js";
import type { LambdaCode } from "../registry/directory-registry.js";
import { linkTree } from "./link-tree.js";
import { type TreeNode, walk } from "./tree.js";

/** Longest wait for a starting runtime before a take gives up and the instance starts cold. */
const NEXT_WAIT_MS = 2000;

export interface ZygotePoolOptions {
  readonly backend: SandboxBackend;
  readonly pool: MemoryPool;
  readonly installer: NodeDepsInstaller;
  readonly tree: TreeNode;
  /** Where ready sandboxes' code and package dirs live. */
  readonly dir: string;
  readonly runtimeDir: string;
  /** The limits of Node lambdas that do not set their own: only those can take a ready runtime. */
  readonly limits: SandboxLimits;
  /** The network of lambdas that do not choose one: only those can take a ready runtime. */
  readonly network: NetworkMode;
  readonly timers: Timers;
  readonly logger?: Logger;
  /** Ready runtimes kept for the root node (lambdas without packages, or without a fit). */
  readonly rootSize?: number;
  /** Ready runtimes kept for each other node, once a lambda has asked for it. */
  readonly nodeSize?: number;
  /** Memory the pool must leave free when it refills, MiB. */
  readonly headroomMb: number;
  /** Asked to free memory (evict paused sandboxes) when a refill is short; resolves MiB freed. */
  readonly makeRoom?: (mb: number) => Promise<number>;
}

interface Ready {
  readonly id: string;
  readonly node: TreeNode;
  readonly dir: string;
  readonly sandbox: Sandbox;
  /** Bound to the sandbox: whatever ends it while it is the pool's gives the memory back. */
  readonly reservation: Reservation;
}

export interface TakenSandbox extends ReadySandbox {
  readonly node: string;
}

/**
 * Zygotes for Node: Node cannot fork a running runtime safely, so a zygote is a ready sandbox
 * whose runtime has started and pre-imported its tree node's packages, with an empty /handler.
 * A new instance takes one from the deepest node whose packages are exactly its lambda's
 * dependencies (by name, and versions that satisfy the lambda's ranges), hard-links its code
 * into /handler and asks the runtime to load it. A ready sandbox is handed over once, so it
 * never serves two lambdas; pools refill in the background while the memory pool has room.
 */
export class ZygotePool {
  readonly #opts: ZygotePoolOptions;
  readonly #log: Logger;
  readonly #ready = new Map<string, Ready[]>();
  readonly #starting = new Map<string, number>();
  /** Takes waiting for a runtime that is starting: handed the next one of their node. */
  readonly #waiting = new Map<string, ((entry: Ready | undefined) => void)[]>();
  /** Installed packages of non-root nodes: node id → install (or the install in progress). */
  readonly #installs = new Map<string, Promise<InstalledDeps | undefined>>();
  readonly #installed = new Map<string, InstalledDeps>();
  readonly #wanted = new Set<string>(["root"]);
  readonly #hits = new Map<string, number>();
  #misses = 0;
  #stopped = false;
  #askingForRoom = false;

  constructor(options: ZygotePoolOptions) {
    this.#opts = options;
    this.#log = options.logger ?? silentLogger;
  }

  start(): void {
    this.#fill(this.#opts.tree);
  }

  /**
   * A ready sandbox with the lambda's code loaded, or undefined when none fits (the caller then
   * creates a sandbox the usual way). `deps` is the lambda's own install, if it has one.
   */
  async take(
    code: LambdaCode,
    spec: SandboxSpec,
    deps: InstalledDeps | undefined,
  ): Promise<TakenSandbox | undefined> {
    if (this.#stopped || !this.#eligible(spec)) return undefined;
    // A lambda that ships its own node_modules brings its packages: only the root can take it.
    const vendored = await lstat(join(code.dir, "node_modules")).then(
      (s) => s.isDirectory(),
      () => false,
    );
    const fit = vendored ? this.#opts.tree : this.#fit(await dependenciesOf(code.dir));
    // Without a fit (or with a fit still warming up), the root's runtimes serve.
    const candidates = fit && fit !== this.#opts.tree ? [fit, this.#opts.tree] : [this.#opts.tree];
    for (const node of candidates) {
      const entry = this.#pop(node) ?? (await this.#next(node));
      if (!entry) continue;
      try {
        const started = performance.now();
        await this.#specialise(
          entry,
          code,
          spec,
          node === this.#opts.tree ? deps : undefined,
          vendored,
        );
        this.#opts.timers.record("zygote-specialise", performance.now() - started);
        this.#hits.set(node.id, (this.#hits.get(node.id) ?? 0) + 1);
        // From here the instance owns the memory; the pool's binding no longer frees it.
        return {
          sandbox: entry.sandbox,
          reservation: entry.reservation.handOver(),
          node: node.id,
        };
      } catch (error) {
        this.#log.warn(
          { lambda: code.name, node: node.id, err: error },
          "a ready runtime failed to take the lambda",
        );
        await entry.sandbox.destroy("zygote-failed");
      } finally {
        this.#fill(node);
      }
    }
    this.#misses++;
    return undefined;
  }

  /** Destroys ready sandboxes to free memory for lambdas; resolves the MiB freed. */
  async shed(neededMb: number): Promise<number> {
    let freed = 0;
    for (const [, list] of this.#ready) {
      while (freed < neededMb && list.length > 0) {
        const entry = list.shift() as Ready;
        await entry.sandbox.destroy("evicted");
        freed += this.#opts.limits.memoryMb;
      }
    }
    return freed;
  }

  async shutdown(): Promise<void> {
    this.#stopped = true;
    const all = [...this.#ready.values()].flat();
    this.#ready.clear();
    await Promise.all(all.map((e) => e.sandbox.destroy("shutdown")));
    // Entries' own removals (their sandboxes' deaths) and runtimes still starting work in the
    // same tree meanwhile: retried, a directory emptied under the walk is no error.
    await rm(this.#opts.dir, { recursive: true, force: true, maxRetries: 5 });
  }

  stats(): Record<string, number> {
    const out: Record<string, number> = { "zygote.misses": this.#misses };
    for (const [node, n] of this.#hits) out[`zygote.hits.${node}`] = n;
    out["zygote.ready"] = [...this.#ready.values()].reduce((sum, l) => sum + l.length, 0);
    return out;
  }

  describe(): unknown {
    return [...walk(this.#opts.tree)].map((node) => ({
      node: node.id,
      packages: node.allPackages.map((p) => `${p.name}@${p.range}`),
      ready: (this.#ready.get(node.id) ?? []).map((e) => e.sandbox.id),
      hits: this.#hits.get(node.id) ?? 0,
      installed: this.#installed.has(node.id) || node === this.#opts.tree,
    }));
  }

  #eligible(spec: SandboxSpec): boolean {
    const l = spec.limits;
    const z = this.#opts.limits;
    return (
      spec.runtime === "node" &&
      // Made before its lambda was known: it can serve one only if it can join its CPU group.
      (spec.cpuGroup === undefined || this.#opts.backend.capabilities.joinCpuGroup === true) &&
      spec.network === this.#opts.network &&
      l.memoryMb === z.memoryMb &&
      l.cpuPercent === z.cpuPercent &&
      l.procs === z.procs &&
      l.timeoutMs === z.timeoutMs &&
      l.diskMb === z.diskMb
    );
  }

  /**
   * The deepest node whose packages are exactly the lambda's dependencies, by name, with
   * installed versions satisfying the lambda's ranges. Nodes not installed yet are asked for
   * (installed and filled in the background) and do not fit this time.
   */
  #fit(wanted: Readonly<Record<string, string>>): TreeNode | undefined {
    const names = Object.keys(wanted).sort();
    if (names.length === 0) return this.#opts.tree;
    let best: TreeNode | undefined;
    for (const node of walk(this.#opts.tree)) {
      const nodeNames = [...new Set(node.allPackages.map((p) => p.name))].sort();
      if (nodeNames.join("\0") !== names.join("\0")) continue;
      if (!this.#wanted.has(node.id)) {
        this.#wanted.add(node.id);
        this.#fill(node);
      }
      const installed = this.#installed.get(node.id);
      if (!installed) continue;
      const ok = names.every((name) => {
        const version = installedVersion(installed.dir, name);
        const range = wanted[name] as string;
        return version !== undefined && (validRange(range) === null || satisfies(version, range));
      });
      if (ok && (!best || node.depth > best.depth)) best = node;
    }
    return best;
  }

  /**
   * The next runtime of `node` that finishes starting, when one is starting: it is most of the
   * way to ready, so waiting for it beats a cold create (which would also compete for the CPU).
   */
  #next(node: TreeNode): Promise<Ready | undefined> {
    const installing = node !== this.#opts.tree && !this.#installed.has(node.id);
    const spare = (this.#starting.get(node.id) ?? 0) - (this.#waiting.get(node.id)?.length ?? 0);
    if (installing || spare <= 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const list = this.#waiting.get(node.id) ?? [];
      const timer = setTimeout(() => {
        const i = list.indexOf(waiter);
        if (i >= 0) list.splice(i, 1);
        resolve(undefined);
      }, NEXT_WAIT_MS);
      const waiter = (entry: Ready | undefined) => {
        clearTimeout(timer);
        resolve(entry);
      };
      list.push(waiter);
      this.#waiting.set(node.id, list);
    });
  }

  #pop(node: TreeNode): Ready | undefined {
    const list = this.#ready.get(node.id) ?? [];
    while (list.length > 0) {
      const entry = list.shift() as Ready;
      if (entry.sandbox.state === "running") return entry;
    }
    return undefined;
  }

  async #specialise(
    entry: Ready,
    code: LambdaCode,
    spec: SandboxSpec,
    deps: InstalledDeps | undefined,
    vendored: boolean,
  ) {
    const handler = join(entry.dir, "handler");
    const t0 = performance.now();
    if (spec.cpuGroup) {
      const group = spec.cpuGroup;
      // Off the cold path: moving a task between cgroups waits for an RCU grace period (about
      // 20 ms here, the whole of a warm hand-over). Until the move lands the runtime is held by
      // its own quota; a failed move ends the sandbox rather than leave it outside its group.
      void entry.sandbox.joinCpuGroup(group).catch(async (error: unknown) => {
        this.#log.warn(
          { sandbox: entry.sandbox.id, cpuGroup: group.name, err: error },
          "a ready runtime could not join its lambda's CPU group; destroying it",
        );
        await entry.sandbox.destroy("cpu-group-failed").catch(() => {});
      });
    }
    await linkTree(code.dir, handler, vendored ? new Set() : new Set(["node_modules"]));
    this.#opts.timers.record("zygote-link", performance.now() - t0);
    if (deps) {
      await linkTree(deps.dir, join(entry.dir, "deps"));
      if (!vendored)
        await symlink(`/packages/${DEPS_PACKAGE}/node_modules`, join(handler, "node_modules"));
    }
    const res = await request("http://zygote/_ol/load", {
      dispatcher: entry.sandbox.dispatcher,
      method: "POST",
      body: JSON.stringify({ env: spec.env ?? {} }),
      signal: AbortSignal.timeout(spec.limits.timeoutMs),
    });
    const answer = (await res.body.json()) as { loaded?: boolean; error?: string };
    this.#opts.timers.record("zygote-load", performance.now() - t0);
    if (res.statusCode !== 200)
      throw new Error(`load answered ${res.statusCode}: ${JSON.stringify(answer)}`);
  }

  /** Starts ready sandboxes for `node` until it has its share, while memory allows. */
  #fill(node: TreeNode): void {
    if (this.#stopped || !this.#wanted.has(node.id)) return;
    const isRoot = node === this.#opts.tree;
    const size = isRoot ? (this.#opts.rootSize ?? 3) : (this.#opts.nodeSize ?? 2);
    const have = (this.#ready.get(node.id)?.length ?? 0) + (this.#starting.get(node.id) ?? 0);
    const mb = this.#opts.limits.memoryMb;
    // All missing runtimes start at once: after a burst of new lambdas the pool is back in one
    // runtime's start time, not in one per missing runtime.
    for (let i = 0; i < size - have; i++) {
      const free = this.#opts.pool.freeMb - mb * (i + 1);
      if (this.#opts.pool.waiting > 0) return;
      if (free < this.#opts.headroomMb) {
        this.#askForRoom(node, this.#opts.headroomMb - free);
        return;
      }
      this.#starting.set(node.id, (this.#starting.get(node.id) ?? 0) + 1);
      void this.#startOne(node, isRoot)
        .catch((error: unknown) => {
          this.#log.warn({ node: node.id, err: error }, "could not start a ready runtime");
          return false;
        })
        .then((ok) => {
          this.#starting.set(node.id, (this.#starting.get(node.id) ?? 1) - 1);
          if (ok) this.#fill(node);
          else this.#waiting.get(node.id)?.shift()?.(undefined);
        });
    }
  }

  /** Asks the manager to evict paused sandboxes, then refills if that freed anything. */
  #askForRoom(node: TreeNode, mb: number): void {
    if (!this.#opts.makeRoom || this.#askingForRoom) return;
    this.#askingForRoom = true;
    void this.#opts
      .makeRoom(mb)
      .catch(() => 0)
      .then((freed) => {
        this.#askingForRoom = false;
        if (freed > 0) this.#fill(node);
      });
  }

  async #startOne(node: TreeNode, isRoot: boolean): Promise<boolean> {
    let depsDir: string | undefined;
    if (!isRoot) {
      const installed = await this.#installNode(node);
      if (!installed) return false;
      depsDir = installed.dir;
    }
    if (
      this.#stopped ||
      this.#opts.pool.freeMb - this.#opts.limits.memoryMb < this.#opts.headroomMb
    )
      return false;
    const id = `z-${randomUUID().slice(0, 8)}`;
    const dir = join(this.#opts.dir, id);
    await mkdir(join(dir, "handler"), { recursive: true, mode: 0o755 });
    // A node's runtimes import its packages through /handler/node_modules, as the lambda will;
    // the root's get the link only when a lambda with dependencies takes one.
    if (isRoot) await mkdir(join(dir, "deps"), { mode: 0o755 });
    else
      await symlink(`/packages/${DEPS_PACKAGE}/node_modules`, join(dir, "handler", "node_modules"));
    const reservation = await this.#opts.pool.acquire(this.#opts.limits.memoryMb);
    let sandbox: Sandbox;
    try {
      sandbox = await this.#opts.backend.create({
        codeDir: join(dir, "handler"),
        runtime: "node",
        command: ["node", "/packages/ol-runtime/node-guest.js"],
        limits: this.#opts.limits,
        network: this.#opts.network,
        env: {
          NODE_EXTRA_CA_CERTS: SYSTEM_CA_BUNDLE,
          OL_DEFERRED_LOAD: "1",
          OL_PRE_IMPORT: node.allPackages.map((p) => p.name).join(","),
        },
        packages: {
          "ol-runtime": this.#opts.runtimeDir,
          [DEPS_PACKAGE]: depsDir ?? join(dir, "deps"),
        },
        labels: { role: "zygote", node: node.id },
      });
    } catch (error) {
      reservation.release();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    // Bound before anything else can end it: whoever destroys it, the memory comes back once.
    reservation.bindTo(sandbox);
    // One request warms both ends' HTTP paths and opens the keep-alive connection the load uses.
    await request("http://zygote/_ol/ping", {
      dispatcher: sandbox.dispatcher,
      signal: AbortSignal.timeout(5000),
    })
      .then((res) => res.body.dump())
      .catch(() => {});
    const entry: Ready = { id, node, dir, sandbox, reservation };
    void sandbox.dead.then(async () => {
      const list = this.#ready.get(node.id);
      const i = list?.indexOf(entry) ?? -1;
      if (list && i >= 0) list.splice(i, 1);
      await rm(dir, { recursive: true, force: true, maxRetries: 5 }).catch((error: unknown) =>
        this.#log.warn({ dir, err: error }, "removing a ready runtime's dir failed"),
      );
    });
    if (this.#stopped) {
      await sandbox.destroy("shutdown");
      return false;
    }
    const waiter = this.#waiting.get(node.id)?.shift();
    if (waiter) {
      waiter(entry);
      return true;
    }
    const list = this.#ready.get(node.id) ?? [];
    list.push(entry);
    this.#ready.set(node.id, list);
    return true;
  }

  #installNode(node: TreeNode): Promise<InstalledDeps | undefined> {
    let pending = this.#installs.get(node.id);
    if (!pending) {
      pending = (async () => {
        const dir = join(this.#opts.dir, `.tree-${node.id}`);
        await mkdir(dir, { recursive: true });
        const dependencies = Object.fromEntries(node.allPackages.map((p) => [p.name, p.range]));
        await writeFile(
          join(dir, "package.json"),
          JSON.stringify({ name: `ol-zygote-${node.id}`, dependencies }),
        );
        const installed = await this.#opts.installer.install(`zygote ${node.id}`, dir);
        if (installed) this.#installed.set(node.id, installed);
        return installed;
      })();
      pending.catch((error: unknown) => {
        this.#log.warn({ node: node.id, err: error }, "installing a tree node's packages failed");
      });
      this.#installs.set(node.id, pending);
    }
    return pending.catch(() => undefined);
  }
}

/** A code dir's package.json dependencies (name → range); none when it has no package.json. */
async function dependenciesOf(dir: string): Promise<Record<string, string>> {
  try {
    const pkg = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    return pkg.dependencies ?? {};
  } catch {
    return {};
  }
}

function installedVersion(depsDir: string, name: string): string | undefined {
  const path = join(depsDir, "node_modules", name, "package.json");
  if (!existsSync(path)) return undefined;
  try {
    return (JSON.parse(readFileSync(path, "utf8")) as { version?: string }).version;
  } catch {
    return undefined;
  }
}
