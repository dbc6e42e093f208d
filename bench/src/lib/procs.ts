import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { createServer } from "node:net";

const live = new Set<ChildProcess>();

/** Every child the bench started, killed if the bench itself is interrupted. */
export function killAllChildren(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  /** Resolves with the first stdout line matching `re` (rejects on exit or timeout). */
  line(re: RegExp, timeoutMs: number): Promise<string>;
  readonly output: () => string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

export function startChild(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { logFile?: string } = {},
): Child {
  const { logFile, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...spawnOptions });
  live.add(child);
  let out = "";
  const log = logFile ? createWriteStream(logFile, { flags: "a" }) : undefined;
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let pending = "";
  const onData = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    log?.write(text);
    if (out.length < 64 * 1024) out += text;
    pending += text;
    let nl = pending.indexOf("\n");
    while (nl >= 0) {
      const lineText = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      for (const w of [...waiters]) {
        if (w.re.test(lineText)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(lineText);
        }
      }
      nl = pending.indexOf("\n");
    }
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      live.delete(child);
      log?.end();
      resolve(code);
    });
    child.once("error", (error) => {
      out += String(error);
      live.delete(child);
      resolve(127);
    });
  });
  return {
    process: child,
    pid: child.pid ?? -1,
    output: () => out,
    exited,
    line(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms`)),
          timeoutMs,
        );
        const done = (l: string) => {
          clearTimeout(timer);
          resolve(l);
        };
        waiters.push({ re, resolve: done });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`${command} exited (${code}) before ready:\n${out.slice(-2000)}`));
        });
      });
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const gone = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (!gone) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

/** A free TCP port on 127.0.0.1 (for servers that need one in their config, like workerd). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  server.close();
  await once(server, "close");
  return port;
}
