import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import type { Socket } from "node:net";
import { dirname, join } from "node:path";
import type { Logger } from "@openlambda/sandbox-core";
import { SockHelperMissingError } from "./errors.js";

/** The reaper's name, as argv[0] too: force cleanup finds it by that and its `--tag`. */
export const REAPER_NAME = "ol-sock-reaper";

/** How long the reaper may take to check its header and say it is ready. */
const START_TIMEOUT_MS = 5000;
/** Longer than the reaper's own bound (10 s of kills, 2 s of rmdir): it gives up first. */
const CLOSE_TIMEOUT_MS = 15_000;

/** The reaper binary, built beside the helper (dist/); throws `SockHelperMissingError`. */
export function locateReaper(helperPath: string): string {
  const path = join(dirname(helperPath), REAPER_NAME);
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    throw new SockHelperMissingError(
      `the SOCK reaper binary is missing (looked at ${path}, beside the helper); ` +
        "rebuild the package with a C compiler (pnpm build)",
    );
  }
}

export interface ReaperOptions {
  readonly path: string;
  readonly tag: string;
  /** Only sandbox cgroups whose name starts with this (one backend's) are swept. */
  readonly prefix: string;
  /** The backend's cgroup parents, one per hierarchy. */
  readonly parents: readonly string[];
  /** Mounts below this dir (sandboxes' disk tmpfs) are lazily unmounted after the sweep. */
  readonly mountsUnder?: string;
  /** Network namespaces in /run/netns with this prefix (egress sandboxes') are deleted. */
  readonly netnsPrefix?: string;
  readonly log: Logger;
}

export interface Reaper {
  readonly pid: number;
  /** Closes the reaper's stdin (it sweeps what is left of ours, then exits) and waits for it. */
  close(): Promise<void>;
}

/**
 * Starts native/ol-sock-reaper.c for one backend: it holds no reference on the worker's event
 * loop and outlives the worker. When the worker dies, however it died, the kernel closes the
 * reaper's stdin and the reaper kills and removes this backend's sandbox cgroups, frozen ones
 * too (on cgroup v1 a helper's parent-death kill cannot reach a frozen sandbox).
 */
export async function startReaper(options: ReaperOptions): Promise<Reaper> {
  // Its own session (detached), so nothing sent to the worker's process group reaches it; the
  // parents go on stdin. No guest can see its /proc (each sandbox has its own pid namespace).
  const args = ["--tag", options.tag];
  if (options.mountsUnder) args.push("--mounts-under", options.mountsUnder);
  if (options.netnsPrefix) args.push("--netns-prefix", options.netnsPrefix);
  const child = spawn(options.path, args, {
    argv0: REAPER_NAME,
    cwd: "/",
    detached: true,
    env: {},
    stdio: ["pipe", "pipe", "pipe"],
  });
  const stdin = child.stdin as Socket;
  const stdout = child.stdout as Socket;
  const stderr = child.stderr as Socket;
  stdin.on("error", () => {});
  let said = "";
  stderr.setEncoding("utf8");
  stderr.on("data", (chunk: string) => {
    if (said.length < 4096) said += chunk;
  });
  const exited = new Promise<number>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.once("error", (error) => {
      said += String(error);
      resolve(127);
    });
  });

  stdin.write(`${[options.prefix, ...options.parents].join("\0")}\0\0`);
  const ready = await new Promise<boolean>((resolve) => {
    let out = "";
    const timer = setTimeout(resolve, START_TIMEOUT_MS, false);
    stdout.setEncoding("utf8");
    stdout.on("data", (chunk: string) => {
      out += chunk;
      if (out.includes("ready\n")) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (!ready) {
    child.kill("SIGKILL");
    const status = await exited;
    throw new Error(`${REAPER_NAME} did not start (status ${status}): ${said.trim()}`);
  }
  // The worker must be free to exit without cleanup(): its exit is what the reaper waits for.
  unref(child, stdin, stdout, stderr);
  options.log.debug({ pid: child.pid }, "reaper started");

  let closing: Promise<void> | undefined;
  return {
    pid: child.pid ?? 0,
    close() {
      closing ??= (async () => {
        child.ref();
        stdin.destroy();
        const timer = setTimeout(() => child.kill("SIGKILL"), CLOSE_TIMEOUT_MS);
        const status = await exited;
        clearTimeout(timer);
        if (status !== 0)
          options.log.warn({ status, reaper: said.trim() }, "the reaper did not finish its sweep");
      })();
      return closing;
    },
  };
}

function unref(child: ChildProcess, ...streams: Socket[]): void {
  child.unref();
  for (const s of streams) s.unref();
}
