import type { ChildProcess } from "node:child_process";
import { rm } from "node:fs/promises";
import {
  BaseSandbox,
  type BaseSandboxInit,
  type CpuGroup,
  type DestroyReason,
  type Logger,
  type Sandbox,
  SandboxCreateError,
  type SandboxSpec,
  type SandboxStats,
} from "@openlambda/sandbox-core";
import type { SandboxCgroup } from "./cgroup/driver.js";
import { readTail } from "./log-tail.js";

export interface SockSandboxParts {
  readonly child: ChildProcess;
  /** Resolves with the helper's exit status once it has exited (the guest is gone by then). */
  readonly exited: Promise<number>;
  readonly cgroup: SandboxCgroup;
  /** This sandbox's state directory (log, /tmp, scratch when the backend made it). */
  readonly stateDir: string;
  /** Lazily unmounts the tmpfs its /host and /tmp are in, when it has a disk limit. */
  readonly unmountDisk?: () => Promise<void>;
  readonly logPath: string;
  readonly memoryLimitBytes: number;
  readonly downsizePausedMemory: boolean;
  readonly freezeTimeoutMs: number;
  readonly log: Logger;
  /** Called once the sandbox is gone, whatever the reason; destroy waits for it. */
  readonly onGone: () => void | Promise<void>;
  /** A zygote: its helper outlives it while children it forked live (it reaps them). */
  readonly zygote?: boolean;
  /** Makes a child sandbox whose guest this zygote's fork server forks. */
  readonly fork?: (spec: SandboxSpec) => Promise<Sandbox>;
  /** Moves its CPU under a group (`frozen`: it is paused); absent where the host cannot. */
  readonly joinCpuGroup?: (group: CpuGroup, frozen: boolean) => Promise<void>;
}

/** Slack over current usage when a paused sandbox's limit is lowered: page-cache churn. */
const DOWNSIZE_SLACK = 4 * 1024 * 1024;

/** A SOCK sandbox: a helper child holding a pid namespace, plus its cgroup. */
export class SockSandbox extends BaseSandbox {
  readonly #parts: SockSandboxParts;
  readonly #children = new Set<Sandbox>();
  #downsized = false;

  constructor(init: BaseSandboxInit, parts: SockSandboxParts) {
    super(init);
    this.#parts = parts;
    // The guest dying on its own: the OOM killer's counter says whether the kernel did it.
    void parts.exited
      .then(async (status) => {
        if (this.state === "dead") return;
        const oom = (await parts.cgroup.oomKills().catch(() => 0)) > 0;
        parts.log.debug({ sandboxId: this.id, status, oom }, "guest exited");
        await this.died(oom ? "oom" : "crashed");
      })
      .catch((error: unknown) => {
        parts.log.warn({ sandboxId: this.id, err: error }, "tearing down a dead sandbox failed");
      });
  }

  /** The cgroup, for tests and diagnostics (freezer state, pids). */
  get cgroup(): SandboxCgroup {
    return this.#parts.cgroup;
  }

  /** Live sandboxes forked from this zygote. */
  get children(): number {
    return this.#children.size;
  }

  protected override doJoinCpuGroup(group: CpuGroup): Promise<void> {
    if (!this.#parts.joinCpuGroup) return super.doJoinCpuGroup(group);
    return this.#parts.joinCpuGroup(group, this.state === "paused");
  }

  protected override async doFork(spec: SandboxSpec): Promise<Sandbox> {
    if (!this.#parts.fork) return super.doFork(spec);
    if (this.state !== "running")
      throw new SandboxCreateError(`sandbox ${this.id}: a ${this.state} zygote cannot fork`);
    const child = await this.#parts.fork(spec);
    this.#children.add(child);
    void child.dead.then(() => this.#children.delete(child));
    return child;
  }

  protected async doPause(): Promise<void> {
    const { cgroup } = this.#parts;
    await cgroup.freeze(this.#parts.freezeTimeoutMs);
    if (this.#parts.downsizePausedMemory) {
      // A frozen guest allocates nothing: its limit can shrink to what it holds, returning the
      // difference to the worker's memory pool until it is thawed.
      const usage = await cgroup.memoryUsage();
      const target = Math.ceil((usage + DOWNSIZE_SLACK) / 4096) * 4096;
      if (target < this.#parts.memoryLimitBytes) {
        try {
          await cgroup.setMemoryLimit(target);
          this.#downsized = true;
        } catch (error) {
          // EBUSY: the kernel could not reclaim down to it. Keeping the full limit is harmless.
          this.#parts.log.debug(
            { sandboxId: this.id, err: error },
            "downsizing paused memory failed",
          );
        }
      }
    }
  }

  protected async doUnpause(): Promise<void> {
    if (this.#downsized) {
      await this.#parts.cgroup.setMemoryLimit(this.#parts.memoryLimitBytes);
      this.#downsized = false;
    }
    await this.#parts.cgroup.thaw(this.#parts.freezeTimeoutMs);
  }

  protected async doDestroy(reason: DestroyReason): Promise<void> {
    const { child, cgroup, exited, log } = this.#parts;
    try {
      // Killing the cgroup's tasks kills pid 1 of the sandbox's pid namespace, so the kernel
      // ends everything else in it and drops its mount namespace; the helper then exits.
      const killed = await cgroup.killAll(5000).then(
        () => true,
        (error: unknown) => {
          log.warn({ sandboxId: this.id, err: error }, "killing the sandbox's tasks failed");
          return false;
        },
      );
      // A zygote's helper stays while children it forked live: it reaps them, then exits.
      const lingers = this.#parts.zygote === true && this.#children.size > 0;
      const helperGone =
        lingers ||
        (await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((r) => setTimeout(r, 2000, false).unref()),
        ]));
      if (!helperGone) {
        child.kill("SIGKILL");
        await exited;
      }
      // Its disk goes first, once no task can hold it: the tmpfs pages are then uncharged from
      // this cgroup instead of moving to its parent (or staying with a cgroup the pool reuses).
      if (killed && this.#parts.unmountDisk) {
        await this.#parts.unmountDisk().catch((error: unknown) => {
          log.warn({ sandboxId: this.id, err: error }, "unmounting the sandbox's disk failed");
        });
      }
      await cgroup.remove().catch((error: unknown) => {
        log.warn({ sandboxId: this.id, err: error }, "removing the sandbox's cgroup failed");
      });
      // Its /host and /tmp are the guest's to fill with links: removed only once no guest task
      // can swap a directory for a link under the walk; else force cleanup removes them later.
      if (!killed) return;
      await rm(this.#parts.stateDir, { recursive: true, force: true, maxRetries: 3 }).catch(
        (error: unknown) => {
          // forceCleanup/cleanup() sweeps the sandboxes dir; a destroy must not fail on it.
          log.warn({ sandboxId: this.id, err: error }, "removing the sandbox's dir failed");
        },
      );
      log.debug({ sandboxId: this.id, reason }, "sandbox destroyed");
    } finally {
      await this.#parts.onGone();
    }
  }

  protected async doStats(): Promise<SandboxStats> {
    const s = await this.#parts.cgroup.stats();
    return {
      memoryBytes: s.memoryBytes,
      memoryLimitBytes: Number.isFinite(s.memoryLimitBytes) ? s.memoryLimitBytes : 0,
      cpuUsageUs: s.cpuUsageUs,
      pids: s.pids,
    };
  }

  protected doLogs(): Promise<string> {
    return readTail(this.#parts.logPath);
  }
}
