import { existsSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Logger,
  type Sandbox,
  type SandboxBackend,
  type SandboxLimits,
  type SandboxSpec,
  silentLogger,
} from "@openlambda/sandbox-core";
import type { MemoryPool, Reservation } from "../manager/memory-pool.js";
import type { Timers } from "../manager/timers.js";
import type { InstalledPython, PipInstaller } from "../python/pip-installer.js";
import { normalizePackageName } from "../python/requirements.js";
import { PYTHON_COMMAND, PYTHON_GUEST, PYTHON_RUNTIME_PACKAGE } from "../python/spec.js";
import type { LambdaCode } from "../registry/directory-registry.js";
import { type TreeNode, walk } from "./tree.js";
import type { TakenSandbox } from "./zygote-pool.js";

/** What the Python guest imports, pre-imported by every Python zygote. */
const GUEST_MODULES = [
  "io",
  "json",
  "socket",
  "threading",
  "traceback",
  "importlib",
  "site",
  "urllib.parse",
  "asyncio",
];

export interface PythonForkPoolOptions {
  readonly backend: SandboxBackend;
  readonly pool: MemoryPool;
  readonly pip: PipInstaller;
  readonly tree: TreeNode;
  /** Where tree nodes' requirements and the zygotes' empty code dir live. */
  readonly dir: string;
  readonly runtimeDir: string;
  /** Each zygote's own limits (its fork server and what it imported). */
  readonly limits: SandboxLimits;
  readonly timers: Timers;
  readonly logger?: Logger;
  /** Memory the pool must leave free when it starts a zygote, MiB. */
  readonly headroomMb: number;
}

interface Zygote {
  readonly sandbox: Sandbox;
  /** Bound to the zygote's sandbox. */
  readonly reservation: Reservation;
  children: number;
}

/** A Python tree node: its own entries are all `name==version` (the root has none). */
function pythonPackages(node: TreeNode): string[] | undefined {
  const out: string[] = [];
  for (const p of node.allPackages) {
    const i = p.name.indexOf("==");
    if (i <= 0) return undefined;
    const version = p.name.slice(i + 2);
    out.push(`${normalizePackageName(p.name.slice(0, i))}==${version}`);
  }
  return out.sort();
}

/**
 * Fork zygotes for Python (the SOCK paper's design), on backends that can fork: per Python node
 * of the import-cache tree (entries `name==version`; the root has none) one zygote sandbox whose
 * fork server has imported the node's packages and the guest's modules, started with the pool
 * (and again, on demand, after it died or was evicted). A new instance of a
 * Python lambda is forked from the zygote whose packages are exactly the lambda's pinned
 * requirements (by normalised name and version), else from the root's (which still saves the
 * interpreter's start and the standard library imports). Children keep the zygote's imports; the
 * zygote keeps the memory charged before the fork, and lives on while it has children. A failed
 * fork replaces the zygote with a fresh one and tries once more; then the instance is created
 * cold.
 */
export class PythonForkPool {
  readonly #opts: PythonForkPoolOptions;
  readonly #log: Logger;
  readonly #nodes = new Map<string, string[]>();
  readonly #zygotes = new Map<string, Zygote>();
  readonly #starting = new Map<string, Promise<Zygote | undefined>>();
  readonly #installs = new Map<string, Promise<InstalledPython | undefined>>();
  readonly #hits = new Map<string, number>();
  #misses = 0;
  #failures = 0;
  #stopped = false;

  constructor(options: PythonForkPoolOptions) {
    this.#opts = options;
    this.#log = options.logger ?? silentLogger;
    for (const node of walk(options.tree)) {
      const pkgs = pythonPackages(node);
      if (pkgs) this.#nodes.set(node.id, pkgs);
    }
  }

  get enabled(): boolean {
    return this.#opts.backend.capabilities.fork;
  }

  /** Starts every Python node's zygote: the operator listed them, pinned, in the tree. */
  start(): void {
    if (!this.enabled) return;
    for (const node of this.#nodes.keys()) void this.#ensure(node);
  }

  async take(
    code: LambdaCode,
    spec: SandboxSpec,
    installed: InstalledPython | undefined,
  ): Promise<TakenSandbox | undefined> {
    if (this.#stopped || !this.enabled || spec.runtime !== "python") return undefined;
    const wanted = (installed?.requirements ?? []).map((r) => `${r.name}==${r.version}`).sort();
    const fit = this.#fit(wanted);
    const candidates = fit && fit !== "root" ? [fit, "root"] : ["root"];
    for (const node of candidates) {
      const zygote = this.#zygotes.get(node);
      if (!zygote) {
        // Asked for: started in the background, used from the next instance on.
        void this.#ensure(node);
        continue;
      }
      const child = await this.#fork(node, zygote, code, spec);
      if (child) return child;
    }
    this.#misses++;
    return undefined;
  }

  async #fork(
    node: string,
    zygote: Zygote,
    code: LambdaCode,
    spec: SandboxSpec,
  ): Promise<TakenSandbox | undefined> {
    // The child's memory: the pool holds it until the fork succeeds, then hands it over.
    const reservation = await this.#opts.pool.acquire(spec.limits.memoryMb);
    let current: Zygote | undefined = zygote;
    for (let attempt = 0; attempt < 2 && current; attempt++) {
      const z: Zygote = current;
      try {
        const child = await this.#opts.timers.time("zygote-fork", () => z.sandbox.fork(spec));
        z.children++;
        void child.dead.then(() => {
          z.children--;
        });
        this.#hits.set(node, (this.#hits.get(node) ?? 0) + 1);
        return { sandbox: child, reservation: reservation.handOver(), node };
      } catch (error) {
        this.#failures++;
        this.#log.warn(
          { lambda: code.name, node, zygote: z.sandbox.id, err: error },
          attempt === 0 ? "fork failed; replacing the zygote" : "fork from a fresh zygote failed",
        );
        if (this.#zygotes.get(node) === z) this.#zygotes.delete(node);
        await z.sandbox.destroy("zygote-failed").catch(() => {});
        if (attempt === 0) current = await this.#ensure(node);
      }
    }
    reservation.release();
    return undefined;
  }

  /** Destroys zygotes without children to free memory (the root's last); resolves MiB freed. */
  async shed(neededMb: number): Promise<number> {
    let freed = 0;
    const order = [...this.#zygotes].sort(([a], [b]) => (a === "root" ? 1 : b === "root" ? -1 : 0));
    for (const [node, z] of order) {
      if (freed >= neededMb) break;
      if (z.children > 0) continue;
      this.#zygotes.delete(node);
      await z.sandbox.destroy("evicted");
      freed += this.#opts.limits.memoryMb;
    }
    return freed;
  }

  async shutdown(): Promise<void> {
    this.#stopped = true;
    await Promise.allSettled([...this.#starting.values()]);
    const all = [...this.#zygotes.values()];
    this.#zygotes.clear();
    await Promise.all(all.map((z) => z.sandbox.destroy("shutdown")));
    await rm(this.#opts.dir, { recursive: true, force: true });
  }

  stats(): Record<string, number> {
    if (!this.enabled) return {};
    const out: Record<string, number> = {
      "zygote.python.misses": this.#misses,
      "zygote.python.fork-failures": this.#failures,
      "zygote.python.ready": this.#zygotes.size,
    };
    for (const [node, n] of this.#hits) out[`zygote.python.hits.${node}`] = n;
    return out;
  }

  describe(): unknown {
    if (!this.enabled) return null;
    return [...this.#nodes].map(([node, packages]) => {
      const z = this.#zygotes.get(node);
      return {
        node,
        packages,
        zygote: z ? { id: z.sandbox.id, state: z.sandbox.state, children: z.children } : null,
        hits: this.#hits.get(node) ?? 0,
      };
    });
  }

  /** The Python node whose packages are exactly `wanted` (deepest first; root for none). */
  #fit(wanted: readonly string[]): string | undefined {
    const key = wanted.join("\0");
    let best: string | undefined;
    let depth = -1;
    for (const node of walk(this.#opts.tree)) {
      const pkgs = this.#nodes.get(node.id);
      if (pkgs && pkgs.join("\0") === key && node.depth > depth) {
        best = node.id;
        depth = node.depth;
      }
    }
    return best;
  }

  /** The node's zygote, starting one when there is none (one start at a time per node). */
  #ensure(node: string): Promise<Zygote | undefined> {
    const live = this.#zygotes.get(node);
    if (live && live.sandbox.state !== "dead") return Promise.resolve(live);
    let pending = this.#starting.get(node);
    if (!pending) {
      pending = this.#start(node)
        .catch((error: unknown) => {
          this.#log.warn({ node, err: error }, "could not start a Python zygote");
          return undefined;
        })
        .finally(() => this.#starting.delete(node));
      this.#starting.set(node, pending);
    }
    return pending;
  }

  async #start(node: string): Promise<Zygote | undefined> {
    const packages = this.#nodes.get(node);
    if (!packages || this.#stopped) return undefined;
    const mb = this.#opts.limits.memoryMb;
    if (this.#opts.pool.freeMb - mb < this.#opts.headroomMb) return undefined;
    const installed = packages.length > 0 ? await this.#install(node, packages) : undefined;
    if (packages.length > 0 && !installed) return undefined;
    const codeDir = join(this.#opts.dir, "empty");
    await mkdir(codeDir, { recursive: true, mode: 0o755 });
    const pkgDirs = installed?.packages ?? {};
    const imports = [...GUEST_MODULES];
    for (const dir of Object.values(pkgDirs)) imports.push(...(await topLevelModules(dir)));
    const reservation = await this.#opts.pool.acquire(mb);
    let sandbox: Sandbox;
    try {
      sandbox = await this.#opts.backend.create({
        codeDir,
        runtime: "python",
        command: [...PYTHON_COMMAND],
        limits: this.#opts.limits,
        network: "host",
        env: {
          PYTHONDONTWRITEBYTECODE: "1",
          OL_PACKAGES: Object.keys(pkgDirs)
            .map((p) => `/packages/${p}`)
            .join(":"),
          OL_ZYGOTE_SCRIPTS: PYTHON_GUEST,
        },
        packages: { [PYTHON_RUNTIME_PACKAGE]: this.#opts.runtimeDir, ...pkgDirs },
        preImport: imports,
        role: "zygote",
        labels: { role: "python-zygote", node },
      });
    } catch (error) {
      reservation.release();
      throw error;
    }
    const zygote: Zygote = { sandbox, reservation: reservation.bindTo(sandbox), children: 0 };
    void sandbox.dead.then(() => {
      if (this.#zygotes.get(node) === zygote) this.#zygotes.delete(node);
    });
    if (this.#stopped) {
      await sandbox.destroy("shutdown");
      return undefined;
    }
    this.#zygotes.set(node, zygote);
    return zygote;
  }

  #install(node: string, packages: readonly string[]): Promise<InstalledPython | undefined> {
    let pending = this.#installs.get(node);
    if (!pending) {
      pending = (async () => {
        const dir = join(this.#opts.dir, `.tree-${node}`);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, "requirements.txt"), `${packages.join("\n")}\n`);
        return this.#opts.pip.install(`zygote ${node}`, dir);
      })();
      pending.catch((error: unknown) => {
        this.#installs.delete(node);
        this.#log.warn({ node, err: error }, "installing a Python tree node's packages failed");
      });
      this.#installs.set(node, pending);
    }
    return pending.catch(() => undefined);
  }
}

/** The importable top-level modules of an installed package dir: packages and .py files. */
async function topLevelModules(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const name = entry.name;
    if (name.startsWith(".") || name.startsWith("_") || name.includes("-")) continue;
    if (entry.isDirectory() && existsSync(join(dir, name, "__init__.py"))) out.push(name);
    else if (entry.isFile() && name.endsWith(".py")) out.push(name.slice(0, -3));
  }
  return out;
}
