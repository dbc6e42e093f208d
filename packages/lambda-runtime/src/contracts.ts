import type { Sandbox } from "@openlambda/sandbox-core";

/** A body as the layers pass it on: streamed where it can be, whole where it already is. */
export type Body = AsyncIterable<Uint8Array> | Uint8Array | string | null;

/**
 * One invocation: what the trigger received, with the meaning of a Web `Request` in a lighter
 * shape, so the warm path does not build Web objects it does not need.
 */
export interface InvokeRequest {
  readonly method: string;
  /** The path after `/run/NAME`, with the query string (`/sub/path?q=1`), or `/`. */
  readonly path: string;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Body;
  /** Aborted when the client goes away; the lambda layer then stops waiting. */
  readonly signal?: AbortSignal;
}

/** The lambda layer's answer, with the meaning of a Web `Response`. */
export interface InvokeResponse {
  readonly status: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: Body;
}

/** What a trigger calls: the lambda layer's entry point. Rejects with `OL_*` errors. */
export interface Invoker {
  invoke(name: string, request: InvokeRequest): Promise<InvokeResponse>;
}

/** A lambda's parsed `ol.yaml`, with defaults applied. */
export interface LambdaConfig {
  readonly triggers: {
    /** Allowed methods, upper case; empty means any. */
    readonly http: readonly { readonly method?: string }[];
    readonly cron: readonly { readonly schedule: string }[];
  };
  readonly environment: Readonly<Record<string, string>>;
  readonly reuseSandbox: boolean;
  /** Overrides of the worker's limits, in the worker config's units. */
  readonly limits: {
    readonly memMb?: number;
    readonly cpuPercent?: number;
    /** All its sandboxes together, percent of one core: at most the worker's `lambda_cpu_percent`. */
    readonly lambdaCpuPercent?: number;
    readonly procs?: number;
    readonly runtimeSec?: number;
    readonly diskMb?: number;
  };
  readonly network?: "egress" | "host" | "none";
}

/** The registry as the admin API sees it. */
export interface RegistryApi {
  /** Names of the lambdas the registry holds, sorted. */
  list(): Promise<string[]>;
  /**
   * Stores a `.tar.gz` under `name` after checking it whole; a refused archive changes nothing
   * and rejects with an `OL_*` error (bad name, bad archive, too large).
   */
  upload(
    name: string,
    archive: AsyncIterable<Uint8Array>,
  ): Promise<{ readonly name: string; readonly version: string }>;
  /** Removes a lambda; resolves whether it existed. */
  remove(name: string): Promise<boolean>;
  /** The lambda's parsed `ol.yaml`; rejects with `OL_LAMBDA_NOT_FOUND`. */
  config(name: string): Promise<LambdaConfig>;
}

/** What `/stats`, `/debug` and `/metrics` read from the lambda layer. */
export interface WorkerIntrospection {
  /** OpenLambda's `/stats`: timers as `"<name>.cnt"` and `"<name>.ms-avg"`, plus counters. */
  stats(): Record<string, number>;
  /** Live lambdas, instances and sandboxes, for `/debug`. */
  debug(): unknown;
  /** Gauges and counters for `/metrics`. */
  metrics(): readonly Metric[];
}

export interface Metric {
  /** Prometheus name, `ol_` prefixed. */
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly samples: readonly {
    readonly labels?: Readonly<Record<string, string>>;
    readonly value: number;
  }[];
}

export type LambdaInstanceState = "empty" | "starting" | "running" | "paused" | "stopped";

/**
 * A virtual sandbox for one lambda, backed by 0 or 1 real sandboxes: it provisions one on
 * demand, replaces it after a failure, and pauses it when its queue is empty.
 */
export interface LambdaInstance {
  readonly id: string;
  readonly lambda: string;
  readonly state: LambdaInstanceState;
  /** The real sandbox, while there is one. */
  readonly sandbox: Sandbox | undefined;
  invoke(request: InvokeRequest): Promise<InvokeResponse>;
  /** Stops taking work, waits for the work in flight, then destroys the sandbox. */
  drain(): Promise<void>;
}

/** Installs a lambda's dependencies ahead of its first call (for `ol admin install`). */
export interface Preparer {
  /**
   * Resolves when the current version of `name` is ready to run (its packages installed);
   * `onProgress` gets the package manager's output lines meanwhile. Rejects with `OL_*` errors.
   */
  prepare(name: string, onProgress?: (line: string) => void): Promise<{ readonly ms: number }>;
}
