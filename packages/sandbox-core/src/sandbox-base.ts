import { Dispatcher } from "undici";
import {
  InvalidSpecError,
  SandboxDeadError,
  SandboxPauseError,
  SandboxUnpauseError,
  SandboxUnsupportedError,
} from "./errors.js";
import { validateCpuGroup } from "./spec.js";
import type {
  CpuGroup,
  DestroyReason,
  Sandbox,
  SandboxEvent,
  SandboxSpec,
  SandboxState,
  SandboxStats,
} from "./types.js";

export interface BaseSandboxInit {
  readonly id: string;
  readonly spec: SandboxSpec;
  /** The backend's connection to the guest; closed by the base class on death. */
  readonly transport: Dispatcher;
  readonly emit: (event: SandboxEvent) => void;
}

/**
 * The lifecycle rules every backend shares, so that no backend re-implements them:
 * - operations are serialised: a pause, unpause and destroy never overlap;
 * - destroy is idempotent and concurrent destroys share one teardown;
 * - every call after death rejects with `SandboxDeadError` (and so does the dispatcher);
 * - pause on a paused sandbox and unpause on a running one are no-ops;
 * - a failed pause or unpause destroys the sandbox and rejects with a typed error.
 * Backends implement the `do*` hooks and call `died(reason)` when the guest dies on its own.
 */
export abstract class BaseSandbox implements Sandbox {
  readonly id: string;
  readonly dispatcher: Dispatcher;
  readonly dead: Promise<DestroyReason>;

  #spec: SandboxSpec;
  #state: SandboxState = "running";
  #deathReason: DestroyReason | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #destroying: Promise<void> | undefined;
  #resolveDead!: (reason: DestroyReason) => void;
  readonly #transport: Dispatcher;
  readonly #emit: (event: SandboxEvent) => void;

  constructor(init: BaseSandboxInit) {
    this.id = init.id;
    this.#spec = init.spec;
    this.#transport = init.transport;
    this.#emit = init.emit;
    this.dispatcher = new GuardedDispatcher(this, init.transport);
    this.dead = new Promise((resolve) => {
      this.#resolveDead = resolve;
    });
  }

  /** The spec it was made with; `cpuGroup` as it is now (a joined group shows). */
  get spec(): SandboxSpec {
    return this.#spec;
  }

  get state(): SandboxState {
    return this.#state;
  }

  get deathReason(): DestroyReason | undefined {
    return this.#deathReason;
  }

  protected abstract doPause(): Promise<void>;
  protected abstract doUnpause(): Promise<void>;
  /** Tears everything down. Called once; must not throw for things already gone. */
  protected abstract doDestroy(reason: DestroyReason): Promise<void>;
  protected abstract doStats(): Promise<SandboxStats>;
  protected abstract doLogs(): Promise<string>;
  protected doFork(_spec: SandboxSpec): Promise<Sandbox> {
    return Promise.reject(
      new SandboxUnsupportedError(`sandbox ${this.id}: this backend cannot fork sandboxes`),
    );
  }

  protected doJoinCpuGroup(_group: CpuGroup): Promise<void> {
    return Promise.reject(
      new SandboxUnsupportedError(
        `sandbox ${this.id}: this backend cannot move sandboxes into CPU groups`,
      ),
    );
  }

  pause(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state === "paused") return;
      try {
        await this.doPause();
      } catch (error) {
        await this.#teardown("pause-failed");
        throw new SandboxPauseError(`sandbox ${this.id}: pause failed, sandbox destroyed`, {
          cause: error,
        });
      }
      this.#state = "paused";
      this.#emit({ type: "paused", sandboxId: this.id });
    });
  }

  unpause(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state === "running") return;
      try {
        await this.doUnpause();
      } catch (error) {
        await this.#teardown("unpause-failed");
        throw new SandboxUnpauseError(`sandbox ${this.id}: unpause failed, sandbox destroyed`, {
          cause: error,
        });
      }
      this.#state = "running";
      this.#emit({ type: "unpaused", sandboxId: this.id });
    });
  }

  destroy(reason: DestroyReason = "requested"): Promise<void> {
    if (this.#destroying) return this.#destroying;
    // Destroy does not wait behind a slow pause: it marks death first, then tears down.
    return this.#teardown(reason);
  }

  destroyIfPaused(reason: DestroyReason = "evicted"): Promise<boolean> {
    if (this.#state === "dead") return Promise.resolve(false);
    return this.#serial(async () => {
      if (this.#state !== "paused") return false;
      await this.#teardown(reason);
      return true;
    }).catch((error: unknown) => {
      if (error instanceof SandboxDeadError) return false;
      throw error;
    });
  }

  fork(spec: SandboxSpec): Promise<Sandbox> {
    return this.#serial(() => this.doFork(spec));
  }

  joinCpuGroup(group: CpuGroup): Promise<void> {
    return this.#serial(async () => {
      const current = this.#spec.cpuGroup;
      if (current)
        throw new InvalidSpecError(
          `sandbox ${this.id}: already in CPU group ${current.name}; a sandbox joins one group once`,
        );
      validateCpuGroup(group);
      await this.doJoinCpuGroup(group);
      this.#spec = { ...this.#spec, cpuGroup: group };
    });
  }

  stats(): Promise<SandboxStats> {
    if (this.#state === "dead") return Promise.reject(this.deadError("stats"));
    return this.doStats();
  }

  logs(): Promise<string> {
    if (this.#state === "dead") return Promise.reject(this.deadError("logs"));
    return this.doLogs();
  }

  /** For backends: the guest died on its own (crash, OOM kill). Tears down and records why. */
  protected died(reason: DestroyReason): Promise<void> {
    return this.destroy(reason);
  }

  /** The error every call after death rejects with. */
  deadError(operation: string): SandboxDeadError {
    return new SandboxDeadError(
      `sandbox ${this.id} is dead (${this.#deathReason ?? "destroyed"}); cannot ${operation}`,
    );
  }

  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = async () => {
      if (this.#state === "dead") throw this.deadError("continue");
      return op();
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => {});
    return next;
  }

  #teardown(reason: DestroyReason): Promise<void> {
    if (this.#destroying) return this.#destroying;
    this.#state = "dead";
    this.#deathReason = reason;
    this.#destroying = (async () => {
      try {
        await this.#transport.destroy().catch(() => {});
        await this.doDestroy(reason);
      } finally {
        this.#resolveDead(reason);
        this.#emit({ type: "destroyed", sandboxId: this.id, reason });
      }
    })();
    return this.#destroying;
  }
}

/** Forwards to the guest while the sandbox lives; refuses with `SandboxDeadError` after. */
class GuardedDispatcher extends Dispatcher {
  readonly #sandbox: BaseSandbox;
  readonly #inner: Dispatcher;

  constructor(sandbox: BaseSandbox, inner: Dispatcher) {
    super();
    this.#sandbox = sandbox;
    this.#inner = inner;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
    if (this.#sandbox.state === "dead") throw this.#sandbox.deadError("dispatch a request");
    return this.#inner.dispatch(options, handler);
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    // The sandbox owns the connection; callers closing their view must not close it for others.
    if (callback) {
      queueMicrotask(callback);
      return;
    }
    return Promise.resolve();
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: unknown, b?: unknown): Promise<void> | void {
    const callback = typeof a === "function" ? a : typeof b === "function" ? b : undefined;
    if (callback) {
      queueMicrotask(callback as () => void);
      return;
    }
    return Promise.resolve();
  }
}
