import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { type Logger, silentLogger } from "@openlambda/sandbox-core";
import { descendantDirs, killPids, pollUntil, readPids, removeDir, write } from "./cgroup/files.js";
import { detectCgroupLayout, V1_CONTROLLERS } from "./cgroup/layout.js";
import { locateHelper } from "./helper-binary.js";
import { readMountInfo } from "./mountinfo.js";
import { cleanupEgress } from "./network/egress.js";
import { REAPER_NAME } from "./reaper.js";
import { sandboxesDir, workerTag } from "./worker-tag.js";

const run = promisify(execFile);

/** Written by a backend into its work dir: where its cgroups are, for cleanup after a SIGKILL. */
export const STATE_FILE = ".ol-sock-state.json";

export interface ForceCleanupOptions {
  readonly logger?: Logger;
  /** Extra cgroup parents (relative to each hierarchy root) a backend was given as `cgroupParent`. */
  readonly cgroupParent?: string;
  readonly helperPath?: string;
}

export interface ForceCleanupReport {
  readonly processesKilled: number;
  readonly cgroupsRemoved: number;
  readonly mountsRemoved: number;
  readonly dirsRemoved: number;
  /** Network namespaces of egress sandboxes (their links and the worker's firewall go too). */
  readonly namespacesRemoved: number;
}

/**
 * Removes everything a SOCK backend on `workDir` made, without needing the backend: for a
 * worker that was killed with SIGKILL (`ol worker force-cleanup`). Kills the tasks of every
 * cgroup tagged for this work dir and removes the cgroups, kills leftover helpers, lazily
 * unmounts anything mounted under the work dir, and deletes the per-sandbox directories.
 * Scratch dirs the caller passed in specs are not the backend's and are left alone.
 */
export async function forceCleanup(
  workDir: string,
  options: ForceCleanupOptions = {},
): Promise<ForceCleanupReport> {
  let helperPath: string | undefined;
  try {
    helperPath = locateHelper(options.helperPath);
  } catch {
    // Without the helper nothing can have been mounted by us; the rest still works.
  }
  return cleanupLeftovers(workDir, {
    log: options.logger ?? silentLogger,
    ...(helperPath === undefined ? {} : { helperPath }),
    ...(options.cgroupParent === undefined ? {} : { cgroupParent: options.cgroupParent }),
  });
}

export async function cleanupLeftovers(
  workDirIn: string,
  options: { helperPath?: string; log: Logger; cgroupParent?: string },
): Promise<ForceCleanupReport> {
  const workDir = resolve(workDirIn);
  const tag = workerTag(workDir);
  const log = options.log;

  const helpers = await findHelpers(tag);
  const parents = cgroupParents(workDir, tag, options.cgroupParent);
  const { killed, removed } = await removeCgroups(parents, log);
  killPids(helpers);
  const namespacesRemoved = await cleanupEgress(tag).catch((error: unknown) => {
    log.warn({ err: error }, "removing egress namespaces and firewall failed");
    return 0;
  });

  let mountsRemoved = 0;
  const mounts = readMountInfo()
    .map((m) => m.mountPoint)
    .filter((p) => p === workDir || p.startsWith(workDir + sep))
    .reverse();
  if (mounts.length > 0 && options.helperPath) {
    // Newest first (mountinfo lists in mount order), lazily, so busy mounts go too.
    try {
      await run(options.helperPath, ["umount", ...mounts]);
      mountsRemoved = mounts.length;
    } catch (error) {
      log.warn({ err: error, mounts }, "unmounting leftovers failed");
    }
  }

  let dirsRemoved = 0;
  const root = sandboxesDir(workDir);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    await rm(join(root, name), { recursive: true, force: true, maxRetries: 3 });
    dirsRemoved++;
  }
  await rm(root, { recursive: true, force: true });
  await rm(join(workDir, STATE_FILE), { force: true });
  const report = {
    processesKilled: killed + helpers.length,
    cgroupsRemoved: removed,
    mountsRemoved,
    dirsRemoved,
    namespacesRemoved,
  };
  log.debug({ workDir, ...report }, "sock cleanup done");
  return report;
}

/** Helpers and reapers started for this work dir: their argv carries `--tag <tag>`. */
async function findHelpers(tag: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0");
      const i = argv.indexOf("--tag");
      const ours = argv[0]?.endsWith("ol-sock-helper") || argv[0]?.endsWith(REAPER_NAME);
      if (ours && i > 0 && argv[i + 1] === tag) pids.push(Number(entry));
    } catch {
      // Exited meanwhile.
    }
  }
  return pids;
}

/** Every directory that may hold this worker's cgroups: from the state file and the defaults. */
function cgroupParents(workDir: string, tag: string, extraParent?: string): string[] {
  const dirs = new Set<string>();
  try {
    const state = JSON.parse(readFileSync(join(workDir, STATE_FILE), "utf8")) as {
      cgroupParents?: unknown;
    };
    if (Array.isArray(state.cgroupParents)) {
      for (const d of state.cgroupParents)
        if (typeof d === "string" && d.includes(tag)) dirs.add(d);
    }
  } catch {
    // No state file: the defaults below still find cgroups at the usual place.
  }
  const detected = detectCgroupLayout(readMountInfo());
  if (detected.ok) {
    const roots =
      detected.layout.version === 1
        ? [
            ...new Set(
              V1_CONTROLLERS.map(
                (c) => (detected.layout as { mounts: Record<string, string> }).mounts[c] as string,
              ),
            ),
          ]
        : [detected.layout.mount];
    for (const root of roots) {
      dirs.add(join(root, tag));
      if (extraParent) dirs.add(join(root, extraParent, tag));
    }
  }
  return [...dirs].filter((d) => existsSync(d));
}

async function removeCgroups(
  parents: readonly string[],
  log: Logger,
): Promise<{ killed: number; removed: number }> {
  const children: string[] = [];
  // CPU groups hold sandbox cgroups of their own: the deepest go first.
  for (const p of parents) children.push(...(await descendantDirs(p)));
  const freezeFile = (dir: string) =>
    existsSync(join(dir, "freezer.state"))
      ? { path: join(dir, "freezer.state"), on: "FROZEN", off: "THAWED" }
      : existsSync(join(dir, "cgroup.freeze"))
        ? { path: join(dir, "cgroup.freeze"), on: "1", off: "0" }
        : undefined;
  // Freeze first so nothing forks while it is being killed; SIGKILL lands on thaw.
  for (const dir of children) {
    const f = freezeFile(dir);
    if (f) await write(f.path, f.on).catch(() => {});
  }
  let killed = 0;
  for (const dir of children) {
    if (existsSync(join(dir, "cgroup.kill")))
      await write(join(dir, "cgroup.kill"), "1").catch(() => {});
    const pids = await readPids(join(dir, "cgroup.procs")).catch(() => [] as number[]);
    killed += pids.length;
    killPids(pids);
  }
  for (const dir of children) {
    const f = freezeFile(dir);
    if (f) await write(f.path, f.off).catch(() => {});
  }
  let removed = 0;
  for (const dir of children) {
    try {
      await pollUntil(
        async () => {
          const left = await readPids(join(dir, "cgroup.procs"));
          killPids(left);
          return left.length === 0;
        },
        5000,
        `emptying ${dir}`,
      );
      await removeDir(dir);
      removed++;
    } catch (error) {
      log.warn({ err: error, cgroup: dir }, "removing a leftover cgroup failed");
    }
  }
  for (const p of parents) await removeDir(p).catch(() => {});
  return { killed, removed };
}
