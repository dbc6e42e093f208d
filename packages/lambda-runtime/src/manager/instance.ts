import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import type { Logger, Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import type { Dispatcher } from "undici";
import type {
  Body,
  InvokeRequest,
  InvokeResponse,
  LambdaInstance,
  LambdaInstanceState,
} from "../contracts.js";
import { GuestBadResponseError, LambdaCrashedError, LambdaTimeoutError } from "../errors.js";
import {
  guestAnswerHeaders,
  isGuestProtocolError,
  lengthMismatch,
  protocolError,
} from "./guest-answer.js";
import type { MemoryPool, Reservation } from "./memory-pool.js";
import type { Timers } from "./timers.js";

export interface InstanceOptions {
  readonly lambda: string;
  readonly version: string;
  readonly backend: SandboxBackend;
  readonly spec: SandboxSpec;
  readonly pool: MemoryPool;
  readonly timers: Timers;
  readonly logger: Logger;
  readonly reuseSandbox: boolean;
  readonly pauseIdleMs: number;
  /** Called whenever the instance can take work again (or has stopped). */
  readonly onAvailable: () => void;
  /**
   * Requests one sandbox serves at once: a Node guest answers several while others wait on I/O
   * (1 keeps OpenLambda's one-at-a-time; it is forced when the sandbox is not reused).
   */
  readonly concurrency: number;
  /** A ready sandbox with the code loaded (a zygote), tried before a cold create. */
  readonly takeReady?: () => Promise<ReadySandbox | undefined>;
}

/** A ready sandbox handed to an instance, with the memory reservation it now owns. */
export interface ReadySandbox {
  readonly sandbox: Sandbox;
  readonly reservation: Reservation;
}

// Hop-by-hop headers and those undici manages itself never go to the guest.
const DROP_HEADERS = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "expect",
  "proxy-connection",
  "te",
  "trailer",
  "host",
]);

/**
 * A virtual sandbox for one lambda version: 0 or 1 real sandboxes behind it. It creates one on
 * demand (after reserving its memory), unpauses it for work, pauses it when idle, and drops it
 * after a crash or a timeout so that the next call gets a fresh one. It serves up to
 * `concurrency` requests at once; all of them wait for the same sandbox while it starts.
 */
export class SandboxedInstance implements LambdaInstance {
  readonly id = `i-${randomUUID().slice(0, 8)}`;
  readonly lambda: string;
  readonly version: string;
  #sandbox: Sandbox | undefined;
  #starting: Promise<Sandbox> | undefined;
  #inflight = 0;
  #stopped = false;
  #idleTimer: NodeJS.Timeout | undefined;
  /** An idle pause under way: the sandbox says "running" until the freeze is done. */
  #pausing: Promise<void> | undefined;
  #lastUsed = Date.now();
  #invocations = 0;
  #drained: (() => void) | undefined;
  readonly #opts: InstanceOptions;

  constructor(options: InstanceOptions) {
    this.#opts = options;
    this.lambda = options.lambda;
    this.version = options.version;
  }

  get sandbox(): Sandbox | undefined {
    return this.#sandbox?.state === "dead" ? undefined : this.#sandbox;
  }

  get state(): LambdaInstanceState {
    if (this.#stopped && this.#inflight === 0) return "stopped";
    if (this.#starting) return "starting";
    const s = this.sandbox;
    if (!s) return "empty";
    return s.state === "paused" ? "paused" : "running";
  }

  /** Free for one more request. */
  get available(): boolean {
    const limit = this.#opts.reuseSandbox ? this.#opts.concurrency : 1;
    return !this.#stopped && this.#inflight < limit;
  }

  get busy(): boolean {
    return this.#inflight > 0;
  }

  /** Requests this instance is serving now. */
  get inflight(): number {
    return this.#inflight;
  }

  get lastUsed(): number {
    return this.#lastUsed;
  }

  get invocations(): number {
    return this.#invocations;
  }

  async invoke(request: InvokeRequest): Promise<InvokeResponse> {
    if (!this.available) throw new Error(`instance ${this.id} is busy or stopped`);
    this.#inflight++;
    this.#invocations++;
    clearTimeout(this.#idleTimer);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      this.#done();
    };
    try {
      const sandbox = await this.#ready();
      const response = await this.#send(sandbox, request, finish);
      return response;
    } catch (error) {
      finish();
      throw error;
    }
  }

  /** Destroys the sandbox when it is paused; resolves whether it did. */
  evictIfPaused(): Promise<boolean> {
    const s = this.sandbox;
    return s ? s.destroyIfPaused("evicted") : Promise.resolve(false);
  }

  /** Destroys the sandbox when no request uses it; resolves whether it did. */
  async evictIfIdle(): Promise<boolean> {
    const s = this.sandbox;
    if (!s || this.#inflight > 0 || this.#starting) return false;
    await s.destroy("evicted");
    return true;
  }

  /** Memory this instance holds in the pool, MiB. */
  get reservedMb(): number {
    return this.sandbox ? this.#opts.spec.limits.memoryMb : 0;
  }

  async drain(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#idleTimer);
    if (this.#inflight > 0) {
      // The calls in flight get their full time limit to finish, no more.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#opts.spec.limits.timeoutMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    // A sandbox still being made would outlive the instance (and the code version it holds).
    await this.#starting?.catch(() => undefined);
    await this.#sandbox?.destroy("drained");
    this.#opts.onAvailable();
  }

  /** The sandbox, unpaused; created (once, for every request waiting) when there is none. */
  async #ready(): Promise<Sandbox> {
    if (this.#starting) return this.#starting;
    const current = this.sandbox;
    if (current) {
      // A pause that started before this call still freezes the sandbox after it: unpause
      // behind it (the sandbox serialises the two), or the call would hang until its timeout.
      if (current.state === "paused" || this.#pausing)
        await this.#opts.timers.time("unpause", () => current.unpause());
      return current;
    }
    this.#starting = this.#provision();
    try {
      return await this.#starting;
    } finally {
      this.#starting = undefined;
    }
  }

  async #provision(): Promise<Sandbox> {
    const ready = await this.#opts.takeReady?.().catch(() => undefined);
    let sandbox: Sandbox;
    let reservation: Reservation;
    if (ready) {
      ({ sandbox, reservation } = ready);
    } else {
      reservation = await this.#opts.pool.acquire(this.#opts.spec.limits.memoryMb);
      try {
        sandbox = await this.#opts.timers.time("sandbox-create", () =>
          this.#opts.backend.create(this.#opts.spec),
        );
      } catch (error) {
        reservation.release();
        throw error;
      }
    }
    reservation.bindTo(sandbox);
    void sandbox.dead.then((reason) => {
      this.#opts.logger.debug({ sandbox: sandbox.id, lambda: this.lambda, reason }, "sandbox gone");
      if (this.#sandbox === sandbox) this.#sandbox = undefined;
      this.#opts.onAvailable();
    });
    this.#sandbox = sandbox;
    return sandbox;
  }

  async #send(
    sandbox: Sandbox,
    request: InvokeRequest,
    finish: () => void,
  ): Promise<InvokeResponse> {
    const timeoutMs = this.#opts.spec.limits.timeoutMs;
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
      void sandbox.destroy("timeout");
    }, timeoutMs);
    const onClientGone = () => abort.abort();
    request.signal?.addEventListener("abort", onClientGone, { once: true });
    const cleanup = () => {
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", onClientGone);
      finish();
    };
    const fail = (error: unknown): Error => {
      cleanup();
      // A bad answer is the lambda's fault, not its sandbox's: the sandbox is kept.
      if (error instanceof GuestBadResponseError) return error;
      if (timedOut) {
        return new LambdaTimeoutError(
          `lambda ${this.lambda} ran past its ${timeoutMs / 1000} s limit; its sandbox was replaced`,
          { cause: error },
        );
      }
      if (request.signal?.aborted) return error instanceof Error ? error : new Error(String(error));
      if (sandbox.state !== "dead" && isGuestProtocolError(error)) {
        return protocolError(this.lambda, error);
      }
      const reason = sandbox.deathReason;
      if (sandbox.state !== "dead") void sandbox.destroy("crashed");
      const why =
        reason === "oom" ? "was killed for going past its memory limit" : "died during the call";
      return new LambdaCrashedError(
        `lambda ${this.lambda}: its sandbox ${why}; the next call gets a fresh one`,
        {
          cause: error,
        },
      );
    };

    let res: Dispatcher.ResponseData;
    try {
      res = await sandbox.dispatcher.request({
        path: request.path,
        method: request.method as Dispatcher.HttpMethod,
        headers: guestHeaders(request.headers),
        body: toUndiciBody(request.body),
        signal: abort.signal,
      } satisfies Dispatcher.RequestOptions);
    } catch (error) {
      throw fail(error);
    }
    const body = res.body;
    const status = res.statusCode;
    const lambda = this.lambda;
    let headers: Record<string, string | string[]>;
    try {
      headers = guestAnswerHeaders(lambda, status, res.headers);
    } catch (error) {
      // Nothing of the answer goes on; its connection to the guest is closed with its body
      // (undici then reports the abort on the body, which nobody reads any more).
      body.on("error", ignore).destroy();
      throw fail(error);
    }
    // A small answer of known length is read whole: one buffer on to the trigger, the call is
    // finished at once, and no stream is wrapped twice on the warm path.
    const length = Number(headers["content-length"] ?? Number.NaN);
    // The Content-Length passed on must be the body's: a client reads exactly that many bytes,
    // so a guest that lied would shift every later answer on the client's connection.
    const expected =
      request.method === "HEAD" || status === 204 || status === 304 ? Number.NaN : length;
    if (length <= WHOLE_RESPONSE_BYTES) {
      let whole: Uint8Array;
      try {
        whole = await body.bytes();
        if (whole.byteLength !== expected && !Number.isNaN(expected)) {
          throw lengthMismatch(lambda, expected, whole.byteLength);
        }
      } catch (error) {
        throw fail(error);
      }
      cleanup();
      return { status, headers, body: whole };
    }
    async function* stream(): AsyncGenerator<Uint8Array> {
      let sent = 0;
      try {
        for await (const chunk of body) {
          sent += (chunk as Uint8Array).byteLength;
          if (sent > expected) throw lengthMismatch(lambda, expected, `more than ${expected}`);
          yield chunk as Uint8Array;
        }
        if (sent < expected) throw lengthMismatch(lambda, expected, sent);
      } catch (error) {
        throw fail(error);
      } finally {
        cleanup();
      }
    }
    return { status, headers, body: stream() };
  }

  #done(): void {
    this.#inflight--;
    this.#lastUsed = Date.now();
    if (this.#inflight > 0) {
      this.#opts.onAvailable();
      return;
    }
    if (this.#drained) {
      this.#drained();
      return;
    }
    const sandbox = this.sandbox;
    if (sandbox && !this.#opts.reuseSandbox) {
      void sandbox.destroy("no-reuse");
    } else if (sandbox) {
      this.#idleTimer = setTimeout(() => {
        if (this.#inflight === 0 && sandbox.state === "running") {
          const pausing = sandbox
            .pause()
            .catch((error: unknown) => {
              this.#opts.logger.warn(
                { sandbox: sandbox.id, err: error },
                "pause failed; sandbox destroyed",
              );
            })
            .finally(() => {
              if (this.#pausing === pausing) this.#pausing = undefined;
            });
          this.#pausing = pausing;
        }
      }, this.#opts.pauseIdleMs);
      this.#idleTimer.unref();
    }
    this.#opts.onAvailable();
  }

  describe(): Record<string, unknown> {
    const s = this.sandbox;
    return {
      id: this.id,
      version: this.version,
      state: this.state,
      invocations: this.#invocations,
      lastUsed: new Date(this.#lastUsed).toISOString(),
      sandbox: s ? { id: s.id, state: s.state } : null,
    };
  }
}

function ignore(): void {}

/** Answers up to this size with a Content-Length are read whole (see #send). */
const WHOLE_RESPONSE_BYTES = 64 * 1024;

function guestHeaders(headers: InvokeRequest["headers"]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !DROP_HEADERS.has(k)) out[k] = v;
  }
  return out;
}

function toUndiciBody(body: Body): string | Uint8Array | Readable | null {
  if (body === null) return null;
  if (typeof body === "string" || body instanceof Uint8Array) return body;
  return Readable.from(body, { objectMode: false });
}
