import { request } from "undici";
import { print, table } from "../output.js";
import { effectiveConfig } from "../worker/config-file.js";
import { WorkerNotRunningError } from "../worker/errors.js";
import { workerLayout } from "../worker/layout.js";
import { liveWorker } from "../worker/pid-file.js";
import { isReady } from "./up.js";

export async function run(options: { path: string; json: boolean }): Promise<void> {
  const layout = workerLayout(options.path);
  const worker = await liveWorker(layout);
  if (!worker) throw new WorkerNotRunningError(`no worker runs on ${layout.dir}`);
  const config = await effectiveConfig(layout, worker);
  const ready = await isReady(worker.url);
  const stats = ready
    ? ((await (await request(`${worker.url}/stats`)).body.json()) as Record<string, number>)
    : {};
  if (options.json) {
    print(
      JSON.stringify({ pid: worker.pid, url: worker.url, ready, sandbox: config.sandbox, stats }),
    );
    return;
  }
  print(
    table([
      ["worker", worker.url],
      ["pid", worker.pid],
      ["status", ready ? "ready" : "not answering"],
      ["sandbox", config.sandbox],
      ["started", worker.startedAt],
    ]),
  );
  const rows = Object.entries(stats).sort(([a], [b]) => a.localeCompare(b));
  if (rows.length > 0) print(`\n${table(rows, ["stat", "value"])}`);
}
