import { setTimeout as sleep } from "node:timers/promises";
import { consoleLogger, progress } from "../output.js";
import { cleanupLeftovers } from "../worker/backend.js";
import { effectiveConfig } from "../worker/config-file.js";
import { WorkerNotRunningError } from "../worker/errors.js";
import { workerLayout } from "../worker/layout.js";
import { isAlive, liveWorker, removePidFile } from "../worker/pid-file.js";

/** Asks the worker to stop (SIGTERM), waits, kills it if it hangs, then removes leftovers. */
export async function run(options: { path: string }): Promise<void> {
  const layout = workerLayout(options.path);
  const worker = await liveWorker(layout);
  if (!worker) throw new WorkerNotRunningError(`no worker runs on ${layout.dir}`);
  const config = await effectiveConfig(layout, worker);
  progress(`stopping worker pid ${worker.pid}`);
  process.kill(worker.pid, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (isAlive(worker.pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(worker.pid)) {
    progress(`worker pid ${worker.pid} did not stop in 30 s; killing it`);
    process.kill(worker.pid, "SIGKILL");
    while (isAlive(worker.pid)) await sleep(50);
  }
  await cleanupLeftovers(config, layout, consoleLogger("warn"));
  await removePidFile(layout);
  progress("worker stopped");
}
