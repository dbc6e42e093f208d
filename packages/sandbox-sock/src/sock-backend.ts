import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import {
  BackendUnavailableError,
  type CpuGroup,
  GUEST_SOCKET_NAME,
  GuestSocketUnsafeError,
  guestClient,
  handOverTree,
  type Logger,
  makeReadableByGuest,
  mountDiskTmpfs,
  type Sandbox,
  type SandboxBackend,
  type SandboxCapabilities,
  SandboxCreateError,
  SandboxEventHub,
  SandboxGuestStartError,
  type SandboxSpec,
  SandboxUnsupportedError,
  silentLogger,
  UidAllocator,
  type UidRange,
  validateSpec,
  waitForGuestSocket,
} from "@openlambda/sandbox-core";
import { CpuGroups, type GroupHold } from "./cgroup/cpu-groups.js";
import { type CgroupDriver, cgroupDriver, type SandboxCgroup } from "./cgroup/driver.js";
import { CgroupPool } from "./cgroup/pool.js";
import { takeSandboxCgroup } from "./cgroup/sandbox-cgroup.js";
import { cleanupLeftovers, STATE_FILE } from "./force-cleanup.js";
import { locateHelper } from "./helper-binary.js";
import { checkHost } from "./host-checks.js";
import { readTail } from "./log-tail.js";
import { type EgressNamespace, EgressNetwork, egressNames } from "./network/egress.js";
import { locateReaper, type Reaper, startReaper } from "./reaper.js";
import { DISK_DIR, unmountDisk } from "./sandbox-disk.js";
import { SockSandbox } from "./sock-sandbox.js";
import { sandboxesDir, workerTag } from "./worker-tag.js";

export interface SockFeatures {
  /** Install the seccomp filter in every sandbox (default true). */
  readonly seccomp?: boolean;
  /** Shrink a paused sandbox's memory limit to what it uses (default true). */
  readonly downsizePausedMemory?: boolean;
}

export interface SockBackendOptions {
  /** Where per-sandbox state (scratch, /tmp, logs) and the backend's state file live. */
  readonly workDir: string;
  /** The read-only root filesystem every sandbox sees (see `buildBaseRootfs`). */
  readonly baseDir: string;
  /** Pre-made cgroups kept ready (default 8; 0 makes one per create). */
  readonly cgroupPoolSize?: number;
  /**
   * Host uids for guests, one per live sandbox (its gid is the same number), so that plain Unix
   * permissions separate tenants too. Default `DEFAULT_UID_RANGE` (1000000, 65536 of them).
   */
  readonly uidRange?: UidRange;
  readonly features?: SockFeatures;
  /** Parent of the worker's cgroups, relative to each hierarchy's root (default: the root). */
  readonly cgroupParent?: string;
  /** How long a guest may take to listen on /host/ol.sock (default 10 s). */
  readonly startTimeoutMs?: number;
  /** Bytes of guest output kept in a sandbox's log (default 1 MiB). */
  readonly logMaxBytes?: number;
  /** Network `egress`: the block its sandboxes' links are carved from, and how many stay ready. */
  readonly egress?: { readonly subnet?: string; readonly poolSize?: number };
  /** Override the helper binary (tests, custom builds). */
  readonly helperPath?: string;
  readonly logger?: Logger;
}

export const SOCK_CAPABILITIES: SandboxCapabilities = {
  fork: true,
  pause: true,
  downsizePausedMemory: true,
  limits: { memory: true, cpu: true, procs: true, disk: true, cpuGroups: true },
  networkModes: ["egress", "host", "none"],
  uidPerSandbox: true,
  joinCpuGroup: true,
};

const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/** Where a zygote sees the fork server (dist/zygote, shipped beside the helper). */
export const ZYGOTE_PACKAGE = "ol-zygote";
/** What a `role: "zygote"` sandbox runs, whatever its spec's command says. */
export const ZYGOTE_COMMAND = [
  "python3",
  "-S",
  "-u",
  `/packages/${ZYGOTE_PACKAGE}/ol_fork_server.py`,
] as const;
/** The fork server's control socket, in the zygote's scratch dir. */
const FORK_SOCKET_NAME = "fork.sock";

/** How a sandbox comes to be: a plain create, a zygote, or a child forked from a zygote. */
type CreateMode =
  | { readonly kind: "leaf" }
  | { readonly kind: "zygote" }
  | { readonly kind: "child"; readonly forkSocket: string };

/**
 * The SOCK backend: each sandbox is a pid/ipc/uts/mount (and for `network: none`/`egress`, net)
 * namespace rooted in a read-only base, in its own cgroup, running as an unprivileged uid with
 * no capabilities under seccomp. Checks the host when called and throws
 * `BackendUnavailableError` (or `SockHelperMissingError`) saying what is missing.
 */
export function sockBackend(options: SockBackendOptions): SandboxBackend {
  const baseDir = resolve(options.baseDir);
  const workDir = resolve(options.workDir);
  const helper = locateHelper(options.helperPath);
  const reaperPath = locateReaper(helper);
  const layout = checkHost(baseDir);
  const log = (options.logger ?? silentLogger).child({ backend: "sock" });
  const uids = new UidAllocator(options.uidRange);
  const features = {
    seccomp: options.features?.seccomp ?? true,
    downsizePausedMemory: options.features?.downsizePausedMemory ?? true,
  };
  const zygoteDir = join(dirname(helper), "zygote");
  const capabilities: SandboxCapabilities = {
    ...SOCK_CAPABILITIES,
    // A custom helper without the fork server next to it cannot make zygotes.
    fork: existsSync(join(zygoteDir, "ol_fork_server.py")),
    downsizePausedMemory: features.downsizePausedMemory,
    // v1 moves only the cpu hierarchy's cgroup; on v2 a move would leave memory charged behind.
    joinCpuGroup: layout.version === 1,
  };
  const tag = workerTag(workDir);
  const cgroupParent = join(options.cgroupParent ?? "", tag);
  const driver: CgroupDriver = cgroupDriver(layout, cgroupParent);
  // Each backend value names its sandbox cgroups apart (a random part, as pids repeat across
  // restarts): its reaper sweeps only these, never another backend's on the same work dir.
  const cgroupPrefix = `sb-${process.pid.toString(36)}-${randomBytes(3).toString("hex")}-`;
  const pool = new CgroupPool(driver, options.cgroupPoolSize ?? 8, cgroupPrefix, log);
  const cpuGroups = new CpuGroups(driver, log);
  const hub = new SandboxEventHub("sock");
  const egress = new EgressNetwork({
    tag,
    log,
    ...(options.egress?.subnet === undefined ? {} : { subnet: options.egress.subnet }),
    ...(options.egress?.poolSize === undefined ? {} : { poolSize: options.egress.poolSize }),
  });
  const live = new Set<SockSandbox>();
  const stateRoot = sandboxesDir(workDir);
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const logMax = options.logMaxBytes ?? 1024 * 1024;

  let ready: Promise<void> | undefined;
  let reaper: Reaper | undefined;
  const prepare = () => {
    ready ??= (async () => {
      await mkdir(stateRoot, { recursive: true, mode: 0o700 });
      await driver.prepare();
      // One process per backend that outlives the worker and ends its sandboxes when the worker
      // dies, frozen ones too; nothing per sandbox.
      reaper ??= await startReaper({
        path: reaperPath,
        tag,
        prefix: cgroupPrefix,
        parents: driver.parentDirs,
        // A dead worker's sandboxes leave no disk (their tmpfs pages are memory) and no egress
        // namespace behind either.
        mountsUnder: stateRoot,
        netnsPrefix: egressNames(tag).netnsPrefix,
        log,
      });
      // What forceCleanup needs beyond the tag: where this worker's cgroups are.
      const state = {
        tag,
        cgroupVersion: driver.version,
        cgroupParents: driver.parentDirs,
        pid: process.pid,
      };
      await writeFile(join(workDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
      void pool.refill();
      // Namespaces ahead of time, so that an egress create only joins one. A host without
      // iptables can still run host and none sandboxes: egress creates then say what is missing.
      void egress
        .prepare()
        .then(() => egress.refill())
        .catch((error: unknown) => log.warn({ err: error }, "egress network not available"));
    })().catch((error: unknown) => {
      ready = undefined;
      throw new SandboxCreateError(`sock backend: preparing ${workDir} failed`, { cause: error });
    });
    return ready;
  };

  const create = async (spec: SandboxSpec, mode: CreateMode): Promise<Sandbox> => {
    validateSpec(spec, capabilities);
    if (mode.kind === "zygote" && !capabilities.fork)
      throw new SandboxUnsupportedError(
        `sock backend: no fork server beside the helper (${zygoteDir}); cannot make zygotes`,
      );
    const started = performance.now();
    await prepare();
    const zygote = mode.kind === "zygote";
    // A zygote's dirs belong to its fork server (uid 0 without CAP_DAC_OVERRIDE), never a guest;
    // it needs no uid of its own (each child it forks gets one).
    const uid = zygote ? 0 : uids.take();
    const gid = uid;
    const id = `sb-${randomBytes(5).toString("hex")}`;
    const stateDir = join(stateRoot, id);
    const ownScratch = spec.scratchDir === undefined;
    // With a disk limit, /host (when ours) and /tmp are made inside one tmpfs of that size.
    const diskDir = spec.limits.diskMb === undefined ? undefined : join(stateDir, DISK_DIR);
    const scratchDir = spec.scratchDir ?? join(diskDir ?? stateDir, "scratch");
    const tmpDir = join(diskDir ?? stateDir, "tmp");
    const logPath = join(stateDir, "guest.log");
    let cgroup: SandboxCgroup | undefined;
    let group: GroupHold | undefined;
    let child: ChildProcess | undefined;
    let netns: EgressNamespace | undefined;
    try {
      await mkdir(stateDir, { mode: 0o700 });
      if (diskDir) await mountDiskTmpfs(diskDir, spec.limits.diskMb as number);
      await Promise.all([
        guestDir(tmpDir, uid, gid),
        ownScratch ? guestDir(scratchDir, uid, gid) : handOverTree(scratchDir, uid, gid),
        makeReadableByGuest(spec.codeDir),
        ...Object.values(spec.packages ?? {}).map(makeReadableByGuest),
      ]);
      const tDirs = performance.now();
      ({ cgroup, group } = await takeSandboxCgroup({ driver, pool, groups: cpuGroups }, spec, id));
      const memoryLimitBytes = spec.limits.memoryMb * 1024 * 1024;

      const tCgroup = performance.now();
      const args = ["--root", baseDir, "--code", resolve(spec.codeDir)];
      args.push("--scratch", scratchDir, "--tmp", tmpDir, "--log", logPath);
      args.push("--log-max", String(logMax));
      // A zygote's helper still wants a guest uid; its fork server never drops to it.
      if (!zygote) args.push("--uid", String(uid), "--gid", String(gid));
      const network = spec.network ?? "host";
      args.push("--net", network, "--seccomp", features.seccomp ? "1" : "0");
      if (network === "egress") {
        netns = await egress.take();
        args.push("--netns", netns.path);
      }
      args.push("--ppid", String(process.pid));
      for (const file of cgroup.procsFiles) args.push("--cgroup", file);
      const packages: Record<string, string> = { ...spec.packages };
      if (zygote) {
        packages[ZYGOTE_PACKAGE] = zygoteDir;
        args.push("--zygote", "1");
      }
      if (mode.kind === "child") args.push("--fork-from", mode.forkSocket);
      for (const [name, dir] of Object.entries(packages)) args.push("--pkg", `${name}=${dir}`);
      args.push("--", ...(zygote ? ZYGOTE_COMMAND : spec.command));

      // The helper's environment is exactly the guest's: it passes it through to exec (or, for
      // a forked child, to the zygote's fork server).
      const env: Record<string, string> = {
        PATH: DEFAULT_PATH,
        HOME: "/tmp",
        LANG: "C.UTF-8",
        ...(zygote && spec.preImport ? { OL_ZYGOTE_IMPORTS: spec.preImport.join(",") } : {}),
        ...spec.env,
      };
      // Only the tag on the command line, which force cleanup looks for: the sandbox's pid 1 is
      // a fork of the helper and its guest can read /proc/1/cmdline, so every host path goes
      // through stdin instead.
      const spawned = spawn(helper, ["run", "--tag", tag, "--stdin-args"], {
        argv0: "ol-sock-helper",
        env,
        stdio: ["pipe", "ignore", "pipe"],
      });
      child = spawned;
      spawned.stdin?.on("error", () => {});
      spawned.stdin?.end(`${args.join("\0")}\0`);
      let stderr = "";
      spawned.stderr?.setEncoding("utf8");
      spawned.stderr?.on("data", (chunk: string) => {
        if (stderr.length < 8192) stderr += chunk;
      });
      let exitStatus: number | undefined;
      const exited = new Promise<number>((resolveExit) => {
        spawned.once("exit", (code, signal) => {
          exitStatus = code ?? 128 + (signal ? 9 : 0);
          resolveExit(exitStatus);
        });
        spawned.once("error", (error) => {
          stderr += String(error);
          exitStatus = 125;
          resolveExit(125);
        });
      });

      const tSpawn = performance.now();
      const ready = await waitForGuestSocket(scratchDir, {
        timeoutMs: startTimeoutMs,
        stillAlive: () =>
          exitStatus === undefined ? undefined : `exited with status ${exitStatus}`,
      });
      const failure = ready.reason;
      if (!ready.socket) {
        if (exitStatus !== undefined) await exited;
        // Setup failures (125) and exec failures (127) are the helper's; anything else the guest's.
        const helperSays = stderr.trim();
        if (exitStatus === 125 || exitStatus === 127) {
          throw new SandboxCreateError(`sandbox ${id}: ${helperSays || failure}`);
        }
        const tail = (await readTail(logPath, 4096)).trim();
        throw new SandboxGuestStartError(
          `sandbox ${id}: guest did not start listening on /host/${GUEST_SOCKET_NAME}: ${failure}` +
            (helperSays ? `\n${helperSays}` : "") +
            (tail ? `\nguest output:\n${tail}` : ""),
        );
      }

      const sandbox: SockSandbox = new SockSandbox(
        { id, spec, transport: guestClient(ready.socket), emit: hub.emit },
        {
          child: spawned,
          exited,
          cgroup,
          stateDir,
          ...(diskDir ? { unmountDisk: () => unmountDisk(helper, diskDir) } : {}),
          logPath,
          memoryLimitBytes,
          downsizePausedMemory: features.downsizePausedMemory,
          freezeTimeoutMs: 5000,
          log,
          onGone: () => {
            live.delete(sandbox);
            if (!zygote) uids.release(uid);
            if (netns) void egress.release(netns);
            // Its cgroup is gone by now: the group's goes with its last sandbox.
            return group?.release();
          },
          ...(capabilities.joinCpuGroup
            ? {
                joinCpuGroup: async (target: CpuGroup, frozen: boolean) => {
                  const hold = await cpuGroups.hold(target);
                  try {
                    await driver.joinGroup(cgroup as SandboxCgroup, target.name, frozen);
                    await hold.track(cgroup as SandboxCgroup, spec.limits.cpuPercent);
                  } catch (error) {
                    await hold.release();
                    throw error;
                  }
                  group = hold;
                },
              }
            : {}),
          zygote,
          ...(zygote
            ? {
                fork: (childSpec: SandboxSpec) =>
                  create(childSpec, {
                    kind: "child",
                    forkSocket: join(scratchDir, FORK_SOCKET_NAME),
                  }),
              }
            : {}),
        },
      );
      live.add(sandbox);
      const ms = performance.now() - started;
      // Where create time goes: host dirs, cgroup (pool + limits), spawn, guest start.
      const phases = {
        dirs: tDirs - started,
        cgroup: tCgroup - tDirs,
        spawn: tSpawn - tCgroup,
        guest: performance.now() - tSpawn,
      };
      log.debug({ sandboxId: id, ms, phases, mode: mode.kind }, "sandbox created");
      hub.emit({ type: "created", sandboxId: id, ms });
      return sandbox;
    } catch (error) {
      await undo(cgroup, child, stateDir, diskDir ? () => unmountDisk(helper, diskDir) : undefined);
      if (!zygote) uids.release(uid);
      if (netns) await egress.release(netns);
      await group?.release();
      if (
        error instanceof SandboxCreateError ||
        error instanceof SandboxGuestStartError ||
        error instanceof GuestSocketUnsafeError ||
        // A host without what egress needs (ip, iptables) says so as it is.
        error instanceof BackendUnavailableError
      )
        throw error;
      throw new SandboxCreateError(`sandbox ${id}: create failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
  };

  return {
    name: "sock",
    capabilities,
    on: (listener) => hub.on(listener),
    create: (spec) => create(spec, { kind: spec.role === "zygote" ? "zygote" : "leaf" }),
    async cleanup() {
      await Promise.all([...live].map((s) => s.destroy("shutdown")));
      await pool.drain();
      await egress.close();
      // Nothing of ours is left for it: it finds nothing, removes nothing, and exits.
      await reaper?.close();
      reaper = undefined;
      // Whatever an earlier worker on this work dir left (SIGKILL), and our own parents.
      await cleanupLeftovers(workDir, { helperPath: helper, log });
      ready = undefined;
    },
  };
}

/** A directory only the guest uid can use. */
async function guestDir(path: string, uid: number, gid: number): Promise<void> {
  await mkdir(path, { mode: 0o700 });
  await chown(path, uid, gid);
}

async function undo(
  cgroup: SandboxCgroup | undefined,
  child: ChildProcess | undefined,
  stateDir: string,
  unmount?: (() => Promise<void>) | undefined,
): Promise<void> {
  if (cgroup) await cgroup.killAll(2000).catch(() => {});
  if (child && child.exitCode === null && child.signalCode === null) {
    const exit = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exit;
  }
  // Before the cgroup goes: its files are uncharged from it, not left to its parent.
  await unmount?.().catch(() => {});
  if (cgroup) await cgroup.remove().catch(() => {});
  await rm(stateDir, { recursive: true, force: true });
}
