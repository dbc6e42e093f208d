import type { Sandbox } from "@openlambda/sandbox-core";

/**
 * The lambda layer's answer to an invocation. It has the meaning of a Web `Response` but a
 * lighter shape, so the warm path does not build Web objects it does not need.
 */
export interface InvokeResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: AsyncIterable<Uint8Array> | Uint8Array | string | null;
}

/** One invocation: what the trigger received, in the shape of a Web `Request`. */
export interface InvokeRequest {
  readonly method: string;
  /** The path after `/run/NAME`, with the query string (`/sub/path?q=1`), or `/`. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: AsyncIterable<Uint8Array> | Uint8Array | string | null;
  readonly signal?: AbortSignal;
}

/** What a trigger calls: the lambda layer's entry point. */
export interface Invoker {
  invoke(name: string, request: InvokeRequest): Promise<InvokeResponse>;
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
