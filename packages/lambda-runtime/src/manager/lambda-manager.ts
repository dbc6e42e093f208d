import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type Logger,
  type SandboxBackend,
  type SandboxSpec,
  silentLogger,
} from "@openlambda/sandbox-core";
import type {
  InvokeRequest,
  InvokeResponse,
  Invoker,
  Metric,
  WorkerIntrospection,
} from "../contracts.js";
import { LambdaLoadError, WorkerShuttingDownError } from "../errors.js";
import type { DirectoryRegistry, LambdaCode } from "../registry/directory-registry.js";
import { nodeGuestRuntimeDir } from "../runtime-paths.js";
import type { WorkerConfig } from "../worker-config.js";
import { LambdaFunction } from "./lambda-function.js";
import { MemoryPool } from "./memory-pool.js";
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
}

/** Where the runtime is visible inside a sandbox. */
const RUNTIME_PACKAGE = "ol-runtime";

/**
 * The lambda layer's entry point: names to functions, code refresh from the registry, the
 * memory pool shared by every sandbox, and the evictor that frees it under pressure (paused
 * sandboxes first, least recently used; an idle running one only as a last resort; never one
 * serving a request).
 */
export class LambdaManager implements Invoker, WorkerIntrospection {
  readonly pool: MemoryPool;
  readonly timers = new Timers();
  readonly #functions = new Map<string, LambdaFunction>();
  readonly #opts: LambdaManagerOptions;
  readonly #logger: Logger;
  readonly #runtimeDir: string;
  #evicting = false;
  #evictions = 0;
  #stopping = false;
  readonly #headroomMb: number;

  constructor(options: LambdaManagerOptions) {
    this.#opts = options;
    this.#logger = options.logger ?? silentLogger;
    this.#runtimeDir = options.runtimeDir ?? nodeGuestRuntimeDir();
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
  }

  async invoke(name: string, request: InvokeRequest): Promise<InvokeResponse> {
    if (this.#stopping) throw new WorkerShuttingDownError("the worker is stopping");
    const code = await this.#opts.registry.get(name);
    let fn = this.#functions.get(name);
    if (!fn) {
      fn = new LambdaFunction(code, {
        backend: this.#opts.backend,
        pool: this.pool,
        timers: this.timers,
        logger: this.#logger.child({ lambda: name }),
        queueSize: this.#opts.config.queue_size,
        maxInstances: this.#opts.config.max_instances,
        pauseIdleMs: this.#opts.config.pause_idle_ms,
        targetWaitMs: this.#opts.targetWaitMs ?? 50,
        specFor: (c) => this.specFor(c),
        onInstanceIdle: () => {
          if (this.pool.waiting > 0) void this.#evict(this.pool.neededMb);
        },
      });
      this.#functions.set(name, fn);
    } else if (fn.code.version !== code.version) {
      this.#logger.info(
        { lambda: name, from: fn.code.version, to: code.version },
        "code updated; draining old instances",
      );
      fn.updateCode(code);
    }
    return fn.invoke(request);
  }

  /** The sandbox spec for a lambda version: runtime, limits (ol.yaml over config), env. */
  specFor(code: LambdaCode): SandboxSpec {
    const runtime = detectRuntime(code);
    const cfg = this.#opts.config.limits;
    const own = code.config.limits;
    return {
      codeDir: code.dir,
      runtime,
      command: ["node", `/packages/${RUNTIME_PACKAGE}/node-guest.js`],
      limits: {
        memoryMb: own.memMb ?? cfg.node_mem_mb,
        cpuPercent: own.cpuPercent ?? cfg.cpu_percent,
        procs: own.procs ?? cfg.node_procs,
        timeoutMs: (own.runtimeSec ?? cfg.runtime_sec) * 1000,
      },
      env: { ...code.config.environment, OL_LAMBDA_NAME: code.name },
      network: code.config.network ?? "host",
      packages: { [RUNTIME_PACKAGE]: this.#runtimeDir },
      labels: { lambda: code.name, version: code.version },
    };
  }

  stats(): Record<string, number> {
    return {
      ...this.timers.snapshot(),
      "mem-pool.used-mb": this.pool.usedMb,
      "mem-pool.total-mb": this.pool.totalMb,
      evictions: this.#evictions,
    };
  }

  debug(): unknown {
    return {
      memPool: { usedMb: this.pool.usedMb, totalMb: this.pool.totalMb, waiting: this.pool.waiting },
      lambdas: [...this.#functions.values()].map((f) => f.describe()),
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
    await Promise.all([...this.#functions.values()].map((f) => f.stop()));
    await this.#opts.backend.cleanup();
  }

  async #evict(neededMb: number, { pausedOnly = false } = {}): Promise<void> {
    if (this.#evicting) return;
    this.#evicting = true;
    try {
      const all = [...this.#functions.values()].flatMap((f) => f.evictionCandidates());
      const byAge = (a: { lastUsed: number }, b: { lastUsed: number }) => a.lastUsed - b.lastUsed;
      let freed = 0;
      for (const instance of all.filter((i) => i.state === "paused").sort(byAge)) {
        if (freed >= neededMb) break;
        const mb = instance.reservedMb;
        if (await instance.evictIfPaused()) {
          freed += mb;
          this.#evictions++;
        }
      }
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
  }
}

function detectRuntime(code: LambdaCode): "node" {
  if (["f.js", "f.mjs", "f.cjs"].some((f) => existsSync(join(code.dir, f)))) return "node";
  if (existsSync(join(code.dir, "f.py"))) {
    throw new LambdaLoadError(
      `lambda ${code.name}: Python lambdas (f.py) are not supported by this worker yet`,
    );
  }
  if (existsSync(join(code.dir, "f.ts"))) {
    throw new LambdaLoadError(
      `lambda ${code.name}: TypeScript lambdas (f.ts) are not supported by this worker yet`,
    );
  }
  throw new LambdaLoadError(
    `lambda ${code.name}: no entry file (f.js, f.mjs or f.cjs) at the root of its code`,
  );
}
