import { join, resolve } from "node:path";

/** Where a worker keeps each thing under its directory (`-p DIR`, default ./default-ol). */
export function workerLayout(dirIn: string) {
  const dir = resolve(dirIn);
  return {
    dir,
    config: join(dir, "config.json"),
    token: join(dir, "token"),
    pid: join(dir, "worker.pid"),
    log: join(dir, "worker.log"),
    base: join(dir, "base"),
    /** The SOCK backend's state (per-sandbox dirs); also where force-cleanup looks. */
    sock: join(dir, "sock"),
    /** The Docker backend's scratch dirs. */
    docker: join(dir, "docker"),
    code: join(dir, "code"),
    registry: join(dir, "registry"),
  };
}

export type WorkerLayout = ReturnType<typeof workerLayout>;

export const DEFAULT_WORKER_DIR = "default-ol";
