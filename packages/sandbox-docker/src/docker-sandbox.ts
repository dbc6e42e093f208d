import { rm } from "node:fs/promises";
import {
  BaseSandbox,
  type BaseSandboxInit,
  type DestroyReason,
  type SandboxStats,
} from "@openlambda/sandbox-core";
import { type DockerEngine, engineStatusOf } from "./engine-client.js";
import { unmountDisk } from "./host-disk.js";
import { type EngineStats, toSandboxStats } from "./stats.js";
import { demultiplexDockerStream } from "./stream-demux.js";

export interface DockerSandboxInit extends BaseSandboxInit {
  readonly engine: DockerEngine;
  readonly containerId: string;
  /** What the backend made for this sandbox (its scratch dir, or its disk): removed on destroy. */
  readonly ownedDir?: string;
  readonly logTailLines: number;
  /** The engine's `/wait` long poll started right after the container started. */
  readonly exited: Promise<number>;
  /** Aborts `exited` (and later polls) when the backend removes the container itself. */
  readonly stopWatching: AbortController;
  /** Called once the container and scratch dir are gone. */
  readonly onGone: () => void;
}

/** One container. Lifecycle rules come from `BaseSandbox`; this maps its hooks to the API. */
export class DockerSandbox extends BaseSandbox {
  readonly containerId: string;
  readonly #engine: DockerEngine;
  readonly #ownedDir: string | undefined;
  readonly #logTailLines: number;
  readonly #onGone: () => void;
  readonly #stopWatching: AbortController;

  constructor(init: DockerSandboxInit) {
    super(init);
    this.containerId = init.containerId;
    this.#engine = init.engine;
    this.#ownedDir = init.ownedDir;
    this.#logTailLines = init.logTailLines;
    this.#onGone = init.onGone;
    this.#stopWatching = init.stopWatching;
    this.#watch(init.exited);
  }

  /**
   * Watches for the guest dying on its own (exit, crash, OOM kill): the engine's `/wait` long
   * poll answers when the container stops.
   */
  #watch(exited: Promise<unknown>): void {
    exited
      .then(
        async () => {
          if (this.state === "dead") return;
          await this.died((await this.#killedByOom()) ? "oom" : "crashed");
        },
        async () => {
          // The long poll failed (engine restarted, connection cut) or was aborted by destroy.
          if (this.state === "dead" || this.#stopWatching.signal.aborted) return;
          if (await this.#stillRunning()) {
            this.#watch(waitForExit(this.#engine, this.containerId, this.#stopWatching.signal));
            return;
          }
          await this.died((await this.#killedByOom()) ? "oom" : "crashed");
        },
      )
      // The sandbox is dead whatever the teardown's outcome; a failed removal (engine gone)
      // is left to cleanup/force-cleanup rather than crashing the process unhandled.
      .catch(() => {});
  }

  protected async doPause(): Promise<void> {
    await this.#engine.raw({
      method: "POST",
      path: `/containers/${this.containerId}/pause`,
      what: `pause ${this.id}`,
    });
  }

  protected async doUnpause(): Promise<void> {
    await this.#engine.raw({
      method: "POST",
      path: `/containers/${this.containerId}/unpause`,
      what: `unpause ${this.id}`,
    });
  }

  protected async doDestroy(_reason: DestroyReason): Promise<void> {
    this.#stopWatching.abort();
    try {
      // force: kill (SIGKILL, paused or not) and remove in one call; v: its anonymous volumes.
      await removeContainer(this.#engine, this.containerId);
    } finally {
      if (this.#ownedDir) {
        // The container is gone, so nothing holds its disk: unmounting frees its pages at once.
        await unmountDisk(this.#ownedDir).catch(() => {});
        await rm(this.#ownedDir, { recursive: true, force: true }).catch(() => {});
      }
      this.#onGone();
    }
  }

  protected async doStats(): Promise<SandboxStats> {
    // one-shot: the engine answers at once instead of sampling twice a second apart.
    const { body } = await this.#engine.json<EngineStats>({
      method: "GET",
      path: `/containers/${this.containerId}/stats`,
      query: { stream: false, "one-shot": true },
      what: `stats of ${this.id}`,
    });
    return toSandboxStats(body, this.spec.limits.memoryMb * 1024 * 1024);
  }

  protected async doLogs(): Promise<string> {
    const { body } = await this.#engine.raw({
      method: "GET",
      path: `/containers/${this.containerId}/logs`,
      query: { stdout: true, stderr: true, tail: this.#logTailLines },
      what: `logs of ${this.id}`,
    });
    return demultiplexDockerStream(body).combined;
  }

  async #killedByOom(): Promise<boolean> {
    return (await inspectState(this.#engine, this.containerId))?.OOMKilled === true;
  }

  async #stillRunning(): Promise<boolean> {
    return (await inspectState(this.#engine, this.containerId))?.Running === true;
  }
}

interface ContainerState {
  readonly Running?: boolean;
  readonly Paused?: boolean;
  readonly OOMKilled?: boolean;
  readonly ExitCode?: number;
}

/** The container's state, or `undefined` when it is gone or the engine cannot say. */
export async function inspectState(
  engine: DockerEngine,
  containerId: string,
): Promise<ContainerState | undefined> {
  try {
    const { body } = await engine.json<{ State?: ContainerState }>({
      method: "GET",
      path: `/containers/${containerId}/json`,
      what: `inspect ${containerId}`,
    });
    return body.State;
  } catch {
    return undefined;
  }
}

/** Resolves with the exit code when the container stops; a long poll with no timeout. */
export async function waitForExit(
  engine: DockerEngine,
  containerId: string,
  signal: AbortSignal,
): Promise<number> {
  const { body } = await engine.json<{ StatusCode?: number }>({
    method: "POST",
    path: `/containers/${containerId}/wait`,
    query: { condition: "not-running" },
    what: `wait for ${containerId}`,
    timeoutMs: 0,
    signal,
  });
  return body.StatusCode ?? -1;
}

/** Kills and removes a container; a container already gone is not an error. */
export async function removeContainer(engine: DockerEngine, containerId: string): Promise<void> {
  try {
    await engine.raw({
      method: "DELETE",
      path: `/containers/${containerId}`,
      query: { force: true, v: true },
      what: `remove container ${containerId}`,
    });
  } catch (error) {
    const status = engineStatusOf(error);
    // 404: gone already; 409 "removal already in progress": someone else is removing it.
    if (status !== 404 && status !== 409) throw error;
  }
}
