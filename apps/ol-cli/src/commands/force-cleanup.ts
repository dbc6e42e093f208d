import { setTimeout as sleep } from "node:timers/promises";
import { consoleLogger, print, progress, table } from "../output.js";
import { cleanupLeftovers } from "../worker/backend.js";
import { effectiveConfig } from "../worker/config-file.js";
import { workerLayout } from "../worker/layout.js";
import { isAlive, liveWorker, readPidFile, removePidFile } from "../worker/pid-file.js";

/** Kills a worker on this dir if one lives, then removes every mount, cgroup, process and container it made. */
export async function run(options: { path: string; json: boolean }): Promise<void> {
  const layout = workerLayout(options.path);
  // A worker killed with SIGKILL leaves its pid file: it says which overrides it ran with.
  const config = await effectiveConfig(layout, await readPidFile(layout));
  const worker = await liveWorker(layout);
  if (worker) {
    progress(`killing worker pid ${worker.pid}`);
    process.kill(worker.pid, "SIGKILL");
    while (isAlive(worker.pid)) await sleep(50);
  }
  const report = await cleanupLeftovers(config, layout, consoleLogger("warn"));
  await removePidFile(layout);
  if (options.json) {
    print(JSON.stringify({ workerKilled: worker?.pid ?? null, ...report }));
    return;
  }
  print(table(Object.entries(report.removed), [`removed (${report.backend})`, "count"]));
}
