import type { Logger, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import type { InvokeRequest, InvokeResponse } from "../contracts.js";
import { MethodNotAllowedError, QueueFullError, WorkerShuttingDownError } from "../errors.js";
import { allowedMethods } from "../lambda-config.js";
import type { CodeLease } from "../registry/code-store.js";
import type { LambdaCode } from "../registry/directory-registry.js";
import { type ReadySandbox, SandboxedInstance } from "./instance.js";
import type { MemoryPool } from "./memory-pool.js";
import type { Timers } from "./timers.js";

export interface FunctionOptions {
  readonly backend: SandboxBackend;
  readonly pool: MemoryPool;
  readonly timers: Timers;
  readonly logger: Logger;
  readonly queueSize: number;
  readonly maxInstances: number;
  readonly pauseIdleMs: number;
  /** Requests one Node sandbox serves at once (other runtimes: 1). */
  readonly instanceConcurrency: number;
  /** How long the autoscaler lets queued work wait before it wants another instance, ms. */
  readonly targetWaitMs: number;
  readonly specFor: (code: LambdaCode) => SandboxSpec;
  /** Told when an instance of this function goes idle (the evictor may now take it). */
  readonly onInstanceIdle: () => void;
  /** A ready sandbox (zygote) for a new instance of this code, when one fits. */
  readonly takeReady?: (code: LambdaCode, spec: SandboxSpec) => Promise<ReadySandbox | undefined>;
}

interface Pending {
  readonly request: InvokeRequest;
  readonly resolve: (response: InvokeResponse) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * One lambda: its current code version, a bounded queue, and the instances that serve it.
 * The autoscaler wants `outstanding × average run time / target wait` instances, bounded by
 * `maxInstances`, and adds them one at a time (never two starting at once) so it changes
 * gradually. A code update drains the old version's instances while new ones serve.
 *
 * It holds its current version's code (the lease it is given), and each instance holds the
 * version it runs until it has drained; then the hold goes back and the registry may remove
 * the version's files.
 */
export class LambdaFunction {
  readonly name: string;
  #lease: CodeLease;
  /** The current version's allowed methods (undefined: any), worked out once per version. */
  #allowed: readonly string[] | undefined;
  #instances: SandboxedInstance[] = [];
  /** Instances draining, and when each is done. */
  readonly #draining = new Map<SandboxedInstance, Promise<void>>();
  /** The code hold of each instance, released once the instance has drained. */
  readonly #holds = new Map<SandboxedInstance, CodeLease>();
  readonly #queue: Pending[] = [];
  readonly #opts: FunctionOptions;
  #avgRunMs = 0;
  #stopped = false;
  /** Why calls are refused after retire(). */
  #retired: unknown;
  readonly #statusCounts = new Map<number, number>();

  /** Takes over `lease`: the function releases it when it moves to another version or ends. */
  constructor(lease: CodeLease, options: FunctionOptions) {
    this.name = lease.code.name;
    this.#lease = lease;
    this.#allowed = allowedMethods(lease.code.config);
    this.#opts = options;
  }

  get code(): LambdaCode {
    return this.#lease.code;
  }

  get instances(): readonly SandboxedInstance[] {
    return this.#instances;
  }

  get queueLength(): number {
    return this.#queue.length;
  }

  get statusCounts(): ReadonlyMap<number, number> {
    return this.#statusCounts;
  }

  /**
   * Switches to a new code version (taking over `lease`): new work goes to new instances, old
   * ones drain, and the old version's hold goes back.
   */
  updateCode(lease: CodeLease): void {
    if (this.#stopped || lease.code.version === this.code.version) {
      lease.release();
      return;
    }
    const old = this.#lease;
    this.#lease = lease;
    old.release();
    this.#allowed = allowedMethods(lease.code.config);
    const instances = this.#instances;
    this.#instances = [];
    for (const instance of instances) void this.#drain(instance).catch(() => {});
    this.#pump();
  }

  /**
   * Ends the function because its lambda is gone (deleted, or its new version cannot run):
   * queued calls fail with `reason`, calls in flight finish, instances drain, holds go back.
   */
  async retire(reason: unknown): Promise<void> {
    if (this.#stopped) return;
    this.#retired = reason;
    await this.#end(reason);
  }

  invoke(request: InvokeRequest): Promise<InvokeResponse> {
    if (this.#retired !== undefined) return Promise.reject(this.#retired);
    if (this.#stopped) return Promise.reject(new WorkerShuttingDownError("the worker is stopping"));
    const allowed = this.#allowed;
    if (allowed && !allowed.includes(request.method.toUpperCase())) {
      return Promise.reject(
        new MethodNotAllowedError(
          `HTTP method not allowed. Sent: ${request.method}, Allowed: [${allowed.join(" ")}]`,
        ),
      );
    }
    if (this.#queue.length >= this.#opts.queueSize) {
      return Promise.reject(
        new QueueFullError(
          `lambda ${this.name}: queue full (${this.#opts.queueSize} waiting); retry later`,
        ),
      );
    }
    return new Promise<InvokeResponse>((resolve, reject) => {
      const pending: Pending = { request, resolve, reject };
      this.#queue.push(pending);
      request.signal?.addEventListener(
        "abort",
        () => {
          const i = this.#queue.indexOf(pending);
          if (i >= 0) {
            this.#queue.splice(i, 1);
            reject(request.signal?.reason ?? new Error("client went away"));
          }
        },
        { once: true },
      );
      this.#pump();
    });
  }

  /** Assigns queued work to free instances and scales out when the queue needs it. */
  #pump(): void {
    for (;;) {
      if (this.#queue.length === 0) return;
      let instance = this.#instances.find((i) => i.available);
      if (!instance && this.#wantsAnother()) instance = this.#addInstance();
      if (!instance) return;
      const pending = this.#queue.shift() as Pending;
      this.#run(instance, pending);
    }
  }

  #wantsAnother(): boolean {
    if (this.#instances.length >= this.#opts.maxInstances) return false;
    if (this.#instances.length === 0) return true;
    if (this.#instances.some((i) => i.state === "starting")) return false;
    const outstanding = this.#queue.length + this.#instances.reduce((n, i) => n + i.inflight, 0);
    const desired = Math.ceil(
      (outstanding * Math.max(this.#avgRunMs, 1)) / this.#opts.targetWaitMs,
    );
    return desired > this.#instances.length;
  }

  #addInstance(): SandboxedInstance {
    const hold = this.#lease.retain();
    const code = hold.code;
    let spec: SandboxSpec;
    try {
      spec = this.#opts.specFor(code);
    } catch (error) {
      hold.release();
      throw error;
    }
    const takeReady = this.#opts.takeReady;
    const instance = new SandboxedInstance({
      ...(takeReady ? { takeReady: () => takeReady(code, spec) } : {}),
      lambda: this.name,
      version: code.version,
      backend: this.#opts.backend,
      spec,
      concurrency: spec.runtime === "node" ? this.#opts.instanceConcurrency : 1,
      pool: this.#opts.pool,
      timers: this.#opts.timers,
      logger: this.#opts.logger,
      reuseSandbox: code.config.reuseSandbox,
      pauseIdleMs: this.#opts.pauseIdleMs,
      onAvailable: () => {
        this.#pump();
        this.#opts.onInstanceIdle();
      },
    });
    this.#instances.push(instance);
    this.#holds.set(instance, hold);
    return instance;
  }

  /** Drains an instance (once), then gives back its hold on its code. */
  #drain(instance: SandboxedInstance): Promise<void> {
    let done = this.#draining.get(instance);
    if (!done) {
      done = instance.drain().finally(() => {
        this.#draining.delete(instance);
        this.#holds.get(instance)?.release();
        this.#holds.delete(instance);
      });
      this.#draining.set(instance, done);
    }
    return done;
  }

  #run(instance: SandboxedInstance, pending: Pending): void {
    const start = performance.now();
    instance.invoke(pending.request).then(
      (response) => {
        const ms = performance.now() - start;
        // An exponential average: recent calls matter most, one outlier does not swing it.
        this.#avgRunMs = this.#avgRunMs === 0 ? ms : this.#avgRunMs * 0.8 + ms * 0.2;
        this.#opts.timers.record("invoke", ms);
        this.#statusCounts.set(response.status, (this.#statusCounts.get(response.status) ?? 0) + 1);
        pending.resolve(response);
      },
      (error: unknown) => {
        const status = (error as { status?: number }).status ?? 500;
        this.#statusCounts.set(status, (this.#statusCounts.get(status) ?? 0) + 1);
        pending.reject(error);
      },
    );
  }

  /** Instances whose sandbox may be evicted, least recently used first. */
  evictionCandidates(): SandboxedInstance[] {
    return [...this.#instances, ...this.#draining.keys()].filter((i) => i.sandbox !== undefined);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    await this.#end(new WorkerShuttingDownError("the worker is stopping"));
  }

  async #end(reason: unknown): Promise<void> {
    this.#stopped = true;
    for (const pending of this.#queue.splice(0)) pending.reject(reason);
    const instances = this.#instances;
    this.#instances = [];
    await Promise.allSettled([...instances.map((i) => this.#drain(i)), ...this.#draining.values()]);
    this.#lease.release();
  }

  describe(): Record<string, unknown> {
    return {
      name: this.name,
      version: this.code.version,
      queue: this.#queue.length,
      avgRunMs: Math.round(this.#avgRunMs * 1000) / 1000,
      instances: this.#instances.map((i) => i.describe()),
      draining: [...this.#draining.keys()].map((i) => i.describe()),
    };
  }
}
