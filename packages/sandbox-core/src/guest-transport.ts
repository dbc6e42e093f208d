import { type FSWatcher, watch } from "node:fs";
import { connect } from "node:net";
import { Pool } from "undici";
import { GuestSocket } from "./guest-socket.js";
import { GUEST_SOCKET_NAME } from "./types.js";

/**
 * A keep-alive HTTP/1.1 connection pool to a guest's pinned socket. A guest that serves several
 * requests at once (Node's does) gets up to `connections` of them; HTTP/1.1 without pipelining
 * carries one request per connection at a time. The pool owns `socket`: closing or destroying
 * the pool releases it, after the last connect.
 */
export function guestClient(socket: GuestSocket, connections = 8): Pool {
  return new PinnedPool(socket, connections);
}

class PinnedPool extends Pool {
  readonly #socket: GuestSocket;

  constructor(socket: GuestSocket, connections: number) {
    super("http://guest", {
      connections,
      socketPath: socket.path,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 600_000,
      pipelining: 1,
      // Timeouts of a request belong to the caller (the lambda layer's per-invocation limit).
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    this.#socket = socket;
  }

  // undici's promise forms call the callback forms on `this`: only the callback forms wrap.
  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    if (!callback) return new Promise((resolve) => this.close(resolve));
    super.close(() => {
      this.#socket.close();
      callback();
    });
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: unknown, b?: unknown): Promise<void> | void {
    const callback = (typeof a === "function" ? a : typeof b === "function" ? b : undefined) as
      | (() => void)
      | undefined;
    const err = a instanceof Error ? a : null;
    if (!callback) return new Promise((resolve) => this.destroy(err, resolve));
    super.destroy(err, () => {
      this.#socket.close();
      callback();
    });
  }
}

export interface WaitForGuestOptions {
  readonly timeoutMs: number;
  /** Checked between attempts: when it returns a reason, waiting stops with that reason. */
  readonly stillAlive?: () => string | undefined;
  readonly signal?: AbortSignal;
  /** The socket's name inside `dir` (default `ol.sock`). */
  readonly name?: string;
}

/** A pinned, listening guest socket, or why there is none. */
export type GuestSocketWait =
  | { readonly socket: GuestSocket; readonly reason?: undefined }
  | { readonly socket?: undefined; readonly reason: string };

/**
 * Waits until the guest accepts connections on its socket in `dir` (the sandbox's scratch dir),
 * then hands over the pinned socket (see `GuestSocket`): the caller connects through it and
 * owns it. Resolves with a reason when it gave up (time out, `stillAlive` said the guest is
 * gone, aborted); rejects with `GuestSocketUnsafeError` when the guest put something other than
 * a socket there. Watches `dir` (inotify) so a guest is noticed within a millisecond of
 * binding, and polls as a fallback; no attempt ever connects by name.
 */
export function waitForGuestSocket(
  dir: string,
  options: WaitForGuestOptions,
): Promise<GuestSocketWait> {
  const name = options.name ?? GUEST_SOCKET_NAME;
  return new Promise((resolve, reject) => {
    let done = false;
    let attempting = false;
    let watcher: FSWatcher | undefined;
    let poll: NodeJS.Timeout | undefined;
    const stop = () => {
      done = true;
      watcher?.close();
      clearInterval(poll);
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    };
    const finish = (result: GuestSocketWait) => {
      if (done) {
        result.socket?.close();
        return;
      }
      stop();
      resolve(result);
    };
    const onAbort = () => finish({ reason: "aborted" });
    const attempt = () => {
      if (done || attempting) return;
      const gone = options.stillAlive?.();
      if (gone) return finish({ reason: gone });
      let socket: GuestSocket | undefined;
      try {
        socket = GuestSocket.open(dir, name);
      } catch (error) {
        stop();
        reject(error);
        return;
      }
      if (!socket) return;
      const pinned = socket;
      attempting = true;
      const probe = connect(pinned.path);
      probe.once("connect", () => {
        probe.destroy();
        attempting = false;
        finish({ socket: pinned });
      });
      probe.once("error", () => {
        // Bound but not listening yet, or rebound since: pin it afresh next time.
        pinned.close();
        attempting = false;
      });
    };
    const timer = setTimeout(
      () => finish({ reason: `no listener on ${name} after ${options.timeoutMs} ms` }),
      options.timeoutMs,
    );
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      watcher = watch(dir, (_event, file) => {
        if (file === name) attempt();
      });
      watcher.on("error", () => {});
    } catch {
      // No inotify: polling alone still works.
    }
    // bind() creates the file a moment before listen(): the poll catches that gap too.
    poll = setInterval(attempt, 5);
    attempt();
  });
}
