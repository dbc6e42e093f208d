import { rm, rmdir } from "node:fs/promises";
import { basename, dirname, isAbsolute } from "node:path";
import { SCRATCH_ROOT_PREFIX } from "./docker-backend.js";
import { removeContainer } from "./docker-sandbox.js";
import { engineSocketPath } from "./engine-address.js";
import { DockerEngine } from "./engine-client.js";
import { unmountDisk } from "./host-disk.js";
import { LABEL_MANAGED, LABEL_OWNED_SCRATCH, LABEL_WORKER, labelFilter } from "./labels.js";

export interface ForceCleanupOptions {
  /** Only what this worker made; default every container any worker of ours made. */
  readonly workerId?: string;
  readonly socketPath?: string;
}

export interface ForceCleanupResult {
  readonly containers: number;
  readonly scratchDirs: number;
}

/**
 * Removes every container labelled by this backend (of one worker, or all), and the scratch
 * dirs the backend made for them — what a worker killed with SIGKILL left behind. Found by
 * labels alone, so it needs no state from the dead worker. Base images are kept.
 */
export async function forceCleanup(options: ForceCleanupOptions = {}): Promise<ForceCleanupResult> {
  const engine = new DockerEngine(engineSocketPath(options.socketPath));
  try {
    const selector: Record<string, string | true> = { [LABEL_MANAGED]: "true" };
    if (options.workerId !== undefined) selector[LABEL_WORKER] = options.workerId;
    const { body } = await engine.json<{ Id: string; Labels?: Record<string, string> }[]>({
      method: "GET",
      path: "/containers/json",
      query: { all: true, filters: labelFilter(selector) },
      what: "list containers to force-clean",
    });
    let scratchDirs = 0;
    await Promise.all(
      body.map(async (container) => {
        await removeContainer(engine, container.Id);
        const scratch = container.Labels?.[LABEL_OWNED_SCRATCH];
        // Only a dir shaped like one the backend makes: a label is not a licence to rm -rf.
        if (scratch && isAbsolute(scratch) && /^docker-[0-9a-f]+$/.test(basename(scratch))) {
          // A sandbox with a disk limit: its dir is a tmpfs, unmounted first.
          await unmountDisk(scratch);
          await rm(scratch, { recursive: true, force: true });
          scratchDirs++;
          const parent = dirname(scratch);
          if (basename(parent).startsWith(SCRATCH_ROOT_PREFIX)) await rmdir(parent).catch(() => {});
        }
      }),
    );
    return { containers: body.length, scratchDirs };
  } finally {
    await engine.close();
  }
}
