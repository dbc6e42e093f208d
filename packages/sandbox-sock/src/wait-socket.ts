import { type FSWatcher, watch } from "node:fs";
import { connect } from "node:net";
import { basename, dirname } from "node:path";

/**
 * Resolves once something accepts connections on `socketPath`, or with a reason when `gone`
 * reports one or time runs out. Watches the socket's directory (inotify) so that a guest is
 * noticed within a millisecond of binding, and polls as a fallback.
 */
export function waitForSocket(
  socketPath: string,
  timeoutMs: number,
  gone: () => string | undefined,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let done = false;
    let watcher: FSWatcher | undefined;
    let poll: NodeJS.Timeout | undefined;
    let attempting = false;
    const name = basename(socketPath);
    const finish = (reason: string | undefined) => {
      if (done) return;
      done = true;
      watcher?.close();
      clearInterval(poll);
      clearTimeout(timer);
      resolve(reason);
    };
    const attempt = () => {
      if (done || attempting) return;
      const why = gone();
      if (why) {
        finish(why);
        return;
      }
      attempting = true;
      const socket = connect(socketPath);
      socket.once("connect", () => {
        socket.destroy();
        finish(undefined);
      });
      socket.once("error", () => {
        attempting = false;
      });
    };
    const timer = setTimeout(
      () => finish(`no listener on ${socketPath} after ${timeoutMs} ms`),
      timeoutMs,
    );
    try {
      watcher = watch(dirname(socketPath), (_event, file) => {
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
