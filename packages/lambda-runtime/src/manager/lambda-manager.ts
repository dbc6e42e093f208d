import { join } from "node:path";
import {
  type CpuGroup,
  type Logger,
  type NetworkMode,
  type SandboxBackend,
  type SandboxSpec,
  silentLogger,
} from "@openlambda/sandbox-core";
import type {
  InvokeRequest,
  InvokeResponse,
  Invoker,
  Metric,
  Preparer,
  WorkerIntrospection,
} from "../contracts.js";
import { WorkerShuttingDownError } from "../errors.js";
import { defaultNetwork } from "../network-mode.js";
import {
  DEPS_PACKAGE,
  type InstalledDeps,
  NodeDepsInstaller,
  SYSTEM_CA_BUNDLE,
} from "../prepare/node-deps.js";
import { type InstalledPython, PipInstaller } from "../python/pip-installer.js";
import { pythonSpec } from "../python/spec.js";
import type { CodeLease, CodeStoreEvent } from "../registry/code-store.js";
import type { DirectoryRegistry, LambdaCode } from "../registry/directory-registry.js";
import { detectRuntime } from "../runtime-kind.js";
import { nodeGuestRuntimeDir } from "../runtime-paths.js";
import { lambdaCpuGroup, lambdaLimits, toSandboxLimits } from "../sandbox-limits.js";
import type { WorkerConfig } from "../worker-config.js";
import { PythonForkPool } from "../zygote/python-fork-pool.js";
import { loadTree } from "../zygote/tree.js";
import { ZygotePool } from "../zygote/zygote-pool.js";
import { LambdaFunction } from "./lambda-function.js";
import { MemoryPool } from "./memory-pool.js";
import { OncePerVersion } from "./once-per-version.js";
import { Timers } from "./timers.js";

export interface LambdaManagerOptions {
  readonly backend: SandboxBackend;
  readonly registry: DirectoryRegistry;
  readonly config: WorkerConfig;
  readonly logger?: Logger;
  /** Where the Node guest runtime lives on the host (default: this package's dist). */
  readonly runtimeDir?: string;
  /** The autoscaler's target wait for queued work, ms. */
  readonly targetWaitMs?: number;
  /** How long a create may wait for memory before it fails, ms. */
  readonly memoryWaitMs?: number;
  /** Where package installs and their store live (default: `<worker_dir>/deps`). */
  readonly depsDir?: string;
}

/** Where the runtime is visible inside a sandbox. */
const RUNTIME_PACKAGE = "ol-runtime";

/**
 * The lambda layer's entry point: names to functions, code refresh from the registry, the
 * memory pool shared by every sandbox, and the evictor that frees it under pressure (paused
 * sandboxes first, least recently used; an idle running one only as a last resort; never one
 * serving a request).
 */
export class LambdaManager implements Invoker, WorkerIntrospection, Preparer {
  readonly pool: MemoryPool;
  readonly timers = new Timers();
  readonly #functions = new Map<string, LambdaFunction>();
  readonly #opts: LambdaManagerOptions;
  readonly #logger: Logger;
  readonly #runtimeDir: string;
  /** The network of lambdas whose ol.yaml names none. */
  readonly #network: NetworkMode;
  readonly #installer: NodeDepsInstaller;
  /** Per code version: its installed dependencies (undefined: it has none), or the failure. */
  readonly #nodeDeps = new OncePerVersion<InstalledDeps>();
  readonly #pip: PipInstaller;
  /** Per Python code version: its pip packages (undefined: none), or the failure. */
  readonly #pythonDeps = new OncePerVersion<InstalledPython>();
  #zygotes: ZygotePool | undefined;
  #pyZygotes: PythonForkPool | undefined;
  #evicting = false;
  #evictions = 0;
  #stopping = false;
  readonly #headroomMb: number;
  readonly #unsubscribe: () => void;

  constructor(options: LambdaManagerOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
    this.#runtimeDir = options.runtimeDir ?? nodeGuestRuntimeDir();
    this.#network = defaultNetwork(options.config, options.backend.capabilities);
    if (options.backend.capabilities.limits.cpuGroups !== true)
      this.#logger.warn(
        { backend: options.backend.name },
        "limits.lambda_cpu_percent is not enforced by this backend: each sandbox is held to its cpu_percent alone",
      );
    const installerLimits = toSandboxLimits(options.config.installer_limits);
    this.#installer = new NodeDepsInstaller({
      backend: options.backend,
      dir: options.depsDir ?? join(options.config.worker_dir, "deps"),
      limits: installerLimits,
      logger: this.#logger.child({ component: "installer" }),
    });
    this.#pip = new PipInstaller({
      backend: options.backend,
      dir: join(options.config.worker_dir, "pip"),
      limits: installerLimits,
      index: options.config.pip_index,
      findLinks: options.config.pip_find_links,
      logger: this.#logger.child({ component: "pip" }),
    });
    this.pool = new MemoryPool(
      options.config.mem_pool_mb,
      (needed) => void this.#evict(needed),
      options.memoryWaitMs,
    );
    // Keep headroom: after each create, paused sandboxes are evicted while free memory is
    // below a tenth of the pool, so the next cold start rarely has to wait.
    this.#headroomMb = Math.floor(options.config.mem_pool_mb / 10);
    options.backend.on((event) => {
      if (event.type === "created" && this.pool.freeMb < this.#headroomMb) {
        void this.#evict(this.#headroomMb - this.pool.freeMb, { pausedOnly: true });
      }
    });
    this.#unsubscribe = options.registry.on((event) => this.#onRegistryEvent(event));
  }

  /**
   * Starts what runs in the background: the zygote pools (unless `features.import_cache` is
   * ""), from `import_cache_tree` or the default tree. Without it, every create is cold.
   */
  async start(): Promise<void> {
    const { config } = this.#opts;
    if (config.features.import_cache === "" || this.#zygotes) return;
    const tree = await loadTree(config.import_cache_tree);
    this.#zygotes = new ZygotePool({
      backend: this.#opts.backend,
      pool: this.pool,
      installer: this.#installer,
      tree,
      dir: join(config.worker_dir, "ready"),
      runtimeDir: this.#runtimeDir,
      limits: lambdaLimits(config, "node"),
      network: this.#network,
      timers: this.timers,
      logger: this.#logger.child({ component: "zygotes" }),
      headroomMb: this.#headroomMb,
      // Ready runtimes are worth more than sandboxes paused the longest: make room for them.
      makeRoom: (mb) => this.#evict(mb, { pausedOnly: true }),
    });
    this.#zygotes.start();
    // Python gets real fork zygotes where the backend can fork (SOCK), from the same tree.
    if (this.#opts.backend.capabilities.fork) {
      this.#pyZygotes = new PythonForkPool({
        backend: this.#opts.backend,
        pool: this.pool,
        pip: this.#pip,
        tree,
        dir: join(config.worker_dir, "python-zygotes"),
        runtimeDir: this.#runtimeDir,
        limits: {
          ...lambdaLimits(config, "python"),
          // A zygote holds its imports: OpenLambda's 50 MiB lambda default is too tight for one.
          memoryMb: Math.max(config.limits.mem_mb, 128),
        },
        timers: this.timers,
        logger: this.#logger.child({ component: "python-zygotes" }),
        headroomMb: this.#headroomMb,
      });
      this.#pyZygotes.start();
    }
  }

  async prepare(name: string, onProgress?: (line: string) => void): Promise<{ ms: number }> {
    const started = performance.now();
    // Held while it installs: a delete meanwhile must not pull the code dir from under pnpm.
    const lease = await this.#opts.registry.acquire(name);
    const stop = onProgress
      ? this.#installer.onProgress((lambda, line) => {
          if (lambda === name) onProgress(line);
        })
      : undefined;
    try {
      await this.#prepare(lease.code);
    } finally {
      stop?.();
      lease.release();
    }
    return { ms: performance.now() - started };
  }

  async invoke(name: string, request: InvokeRequest): Promise<InvokeResponse> {
    if (this.#stopping) throw new WorkerShuttingDownError("the worker is stopping");
    // The call holds its version from lookup until it has an instance's answer: no delete or
    // update in between can remove the files it is about to run.
    const lease = await this.#opts.registry.acquire(name);
    try {
      await this.#prepare(lease.code);
      return await this.#functionFor(lease).invoke(request);
    } finally {
      lease.release();
    }
  }

  /** The lambda's function, made for or moved to the call's version when that is current. */
  #functionFor(lease: CodeLease): LambdaFunction {
    const { code } = lease;
    const name = code.name;
    let fn = this.#functions.get(name);
    if (!fn) {
      fn = new LambdaFunction(lease.retain(), {
        backend: this.#opts.backend,
        pool: this.pool,
        timers: this.timers,
        logger: this.#logger.child({ lambda: name }),
        queueSize: this.#opts.config.queue_size,
        maxInstances: this.#opts.config.max_instances,
        pauseIdleMs: this.#opts.config.pause_idle_ms,
        instanceConcurrency: this.#opts.config.instance_concurrency,
        targetWaitMs: this.#opts.targetWaitMs ?? 50,
        specFor: (c) => this.specFor(c),
        takeReady: (c, spec) =>
          (spec.runtime === "python"
            ? this.#pyZygotes?.take(c, spec, this.#pythonDeps.done(c))
            : this.#zygotes?.take(c, spec, this.#nodeDeps.done(c))) ?? Promise.resolve(undefined),
        onInstanceIdle: () => {
          if (this.pool.waiting > 0) void this.#evict(this.pool.neededMb);
        },
      });
      this.#functions.set(name, fn);
      // Deleted or replaced while this call was prepared: the registry's event came before
      // this function existed, so look again now.
      if (!lease.current) void this.#reconcile(name);
    } else if (fn.code.version !== code.version && lease.current) {
      this.#updateCode(fn, lease);
    }
    // A call that looked up an older version than the function runs is served by the newer.
    return fn;
  }

  #updateCode(fn: LambdaFunction, lease: CodeLease): void {
    this.#logger.info(
      { lambda: fn.name, from: fn.code.version, to: lease.code.version },
      "code updated; draining old instances",
    );
    fn.updateCode(lease.retain());
  }

  #onRegistryEvent(event: CodeStoreEvent): void {
    if (event.type === "removed") {
      this.#nodeDeps.forget(event.code);
      this.#pythonDeps.forget(event.code);
    } else {
      void this.#reconcile(event.name);
    }
  }

  /**
   * Brings a live function in line with the registry after its code changed, so that the old
   * version's instances drain (and its files can go) without waiting for the next call: moved
   * to the new version once that is prepared, or retired when the lambda is gone or its new
   * version cannot be prepared (queued calls get that error; calls in flight finish).
   */
  async #reconcile(name: string): Promise<void> {
    const fn = this.#functions.get(name);
    if (!fn || this.#stopping) return;
    let lease: CodeLease | undefined;
    try {
      lease = await this.#opts.registry.acquire(name);
      if (lease.code.version === fn.code.version) return;
      await this.#prepare(lease.code);
      if (this.#functions.get(name) === fn && lease.current) this.#updateCode(fn, lease);
    } catch (error) {
      if (this.#functions.get(name) !== fn) return;
      this.#functions.delete(name);
      this.#logger.info({ lambda: name, err: error }, "lambda gone; draining its instances");
      await fn.retire(error);
    } finally {
      lease?.release();
    }
  }

  /** Installs a version's packages (npm or pip) once; see OncePerVersion. */
  #prepare(code: LambdaCode): Promise<unknown> {
    return isPython(code)
      ? this.#pythonDeps.run(code, () => this.#pip.install(code.name, code.dir))
      : this.#nodeDeps.run(code, () => this.#installer.install(code.name, code.dir));
  }

  /** The sandbox spec for a lambda version: runtime, limits (ol.yaml over config), env. */
  specFor(code: LambdaCode): SandboxSpec {
    const runtime = detectRuntime(code);
    if (runtime === "python") {
      const installed = this.#pythonDeps.done(code);
      const spec = pythonSpec(code, this.#opts.config, this.#runtimeDir, installed, this.#network);
      return { ...spec, ...this.#cpuGroup(code) };
    }
    return {
      codeDir: code.dir,
      runtime,
      command: ["node", `/packages/${RUNTIME_PACKAGE}/node-guest.js`],
      limits: lambdaLimits(this.#opts.config, runtime, code.config.limits),
      env: {
        NODE_EXTRA_CA_CERTS: SYSTEM_CA_BUNDLE,
        ...code.config.environment,
        OL_LAMBDA_NAME: code.name,
      },
      network: code.config.network ?? this.#network,
      packages: { [RUNTIME_PACKAGE]: this.#runtimeDir, ...this.#depsPackage(code) },
      labels: { lambda: code.name, version: code.version },
      ...this.#cpuGroup(code),
    };
  }

  /** All of a lambda's sandboxes share one CPU group, where the backend enforces groups. */
  #cpuGroup(code: LambdaCode): { cpuGroup?: CpuGroup } {
    if (this.#opts.backend.capabilities.limits.cpuGroups !== true) return {};
    return { cpuGroup: lambdaCpuGroup(this.#opts.config, code.name, code.config.limits) };
  }

  #depsPackage(code: LambdaCode): Record<string, string> {
    const installed = this.#nodeDeps.done(code);
    return installed ? { [DEPS_PACKAGE]: installed.dir } : {};
  }

  stats(): Record<string, number> {
    return {
      ...this.timers.snapshot(),
      ...this.#zygotes?.stats(),
      ...this.#pyZygotes?.stats(),
      "mem-pool.used-mb": this.pool.usedMb,
      "mem-pool.total-mb": this.pool.totalMb,
      evictions: this.#evictions,
    };
  }

  debug(): unknown {
    return {
      memPool: { usedMb: this.pool.usedMb, totalMb: this.pool.totalMb, waiting: this.pool.waiting },
      lambdas: [...this.#functions.values()].map((f) => f.describe()),
      zygotes: this.#zygotes?.describe() ?? null,
      pythonZygotes: this.#pyZygotes?.describe() ?? null,
    };
  }

  metrics(): readonly Metric[] {
    const fns = [...this.#functions.values()];
    const states = new Map<string, number>();
    for (const f of fns)
      for (const i of f.instances) states.set(i.state, (states.get(i.state) ?? 0) + 1);
    return [
      {
        name: "ol_invocations_total",
        help: "Invocations answered, by lambda and HTTP status.",
        type: "counter",
        samples: fns.flatMap((f) =>
          [...f.statusCounts].map(([status, value]) => ({
            labels: { lambda: f.name, status: String(status) },
            value,
          })),
        ),
      },
      {
        name: "ol_instances",
        help: "Lambda instances by state.",
        type: "gauge",
        samples: [...states].map(([state, value]) => ({ labels: { state }, value })),
      },
      {
        name: "ol_queue_length",
        help: "Requests waiting in a lambda's queue.",
        type: "gauge",
        samples: fns.map((f) => ({ labels: { lambda: f.name }, value: f.queueLength })),
      },
      {
        name: "ol_mem_pool_used_mb",
        help: "Memory of the pool reserved by sandboxes, MiB.",
        type: "gauge",
        samples: [{ value: this.pool.usedMb }],
      },
      {
        name: "ol_mem_pool_total_mb",
        help: "Size of the memory pool, MiB.",
        type: "gauge",
        samples: [{ value: this.pool.totalMb }],
      },
      {
        name: "ol_sandbox_creates_total",
        help: "Sandboxes created.",
        type: "counter",
        samples: [{ value: this.timers.count("sandbox-create") }],
      },
      {
        name: "ol_evictions_total",
        help: "Sandboxes evicted to free memory.",
        type: "counter",
        samples: [{ value: this.#evictions }],
      },
    ];
  }

  /** Stops taking work, answers what is queued with OL_SHUTTING_DOWN, destroys every sandbox. */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    this.#unsubscribe();
    await this.#zygotes?.shutdown();
    await this.#pyZygotes?.shutdown();
    await Promise.all([...this.#functions.values()].map((f) => f.stop()));
    await this.#opts.backend.cleanup();
    // Versions that were only held by the stopped functions are being removed: let that end.
    await this.#opts.registry.settled();
  }

  /**
   * Frees `neededMb` of the pool: paused sandboxes first (least recently used), then ready
   * runtimes, then idle running sandboxes. `pausedOnly` (keeping headroom, making room for
   * ready runtimes) takes paused sandboxes and nothing else. Resolves the MiB freed.
   */
  async #evict(neededMb: number, { pausedOnly = false } = {}): Promise<number> {
    if (this.#evicting) return 0;
    this.#evicting = true;
    let freed = 0;
    try {
      const all = [...this.#functions.values()].flatMap((f) => f.evictionCandidates());
      const byAge = (a: { lastUsed: number }, b: { lastUsed: number }) => a.lastUsed - b.lastUsed;
      for (const instance of all.filter((i) => i.state === "paused").sort(byAge)) {
        if (freed >= neededMb) break;
        const mb = instance.reservedMb;
        if (await instance.evictIfPaused()) {
          freed += mb;
          this.#evictions++;
        }
      }
      if (!pausedOnly && freed < neededMb && this.#zygotes)
        freed += await this.#zygotes.shed(neededMb - freed);
      if (!pausedOnly && freed < neededMb && this.#pyZygotes)
        freed += await this.#pyZygotes.shed(neededMb - freed);
      const idle = pausedOnly ? [] : all.filter((i) => i.state === "running" && !i.busy);
      for (const instance of idle.sort(byAge)) {
        if (freed >= neededMb) break;
        const mb = instance.reservedMb;
        if (await instance.evictIfIdle()) {
          freed += mb;
          this.#evictions++;
        }
      }
      if (freed > 0)
        this.#logger.info({ freedMb: freed, neededMb }, "evicted sandboxes to free memory");
    } finally {
      this.#evicting = false;
    }
    return freed;
  }
}

/** Whether a version runs on the Python runtime (a version without an entry fails later). */
/** Per code version (the registry hands out one object per version): off the warm path's disk. */
const pythonByCode = new WeakMap<LambdaCode, boolean>();

function isPython(code: LambdaCode): boolean {
  let python = pythonByCode.get(code);
  if (python === undefined) {
    try {
      python = detectRuntime(code) === "python";
    } catch {
      python = false;
    }
    pythonByCode.set(code, python);
  }
  return python;
}
