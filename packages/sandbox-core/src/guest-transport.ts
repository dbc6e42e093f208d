import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Pool } from "undici";

/**
 * A keep-alive HTTP/1.1 connection pool to a guest's unix socket. A guest that serves several
 * requests at once (Node's does) gets up to `connections` of them; HTTP/1.1 without pipelining
 * carries one request per connection at a time.
 */
export function guestClient(socketPath: string, connections = 8): Pool {
  return new Pool("http://guest", {
    connections,
    socketPath,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
    pipelining: 1,
    // Timeouts of a request belong to the caller (the lambda layer's per-invocation limit).
    headersTimeout: 0,
    bodyTimeout: 0,
  });
}

export interface WaitForGuestOptions {
  readonly timeoutMs: number;
  /** Checked between attempts: when it returns a reason, waiting stops with that reason. */
  readonly stillAlive?: () => string | undefined;
  readonly signal?: AbortSignal;
}

/**
 * Waits until something accepts connections on `socketPath`. Resolves `undefined` when ready,
 * or a short reason when it gave up (time out, or `stillAlive` said the guest is gone).
 */
export async function waitForGuestSocket(
  socketPath: string,
  options: WaitForGuestOptions,
): Promise<string | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = 1;
  for (;;) {
    if (await canConnect(socketPath)) return undefined;
    const gone = options.stillAlive?.();
    if (gone) return gone;
    if (options.signal?.aborted) return "aborted";
    if (Date.now() >= deadline) return `no listener on ${socketPath} after ${options.timeoutMs} ms`;
    await sleep(delay);
    delay = Math.min(delay * 2, 20);
  }
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
