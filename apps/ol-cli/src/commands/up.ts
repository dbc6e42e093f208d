import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { httpTrigger } from "@openlambda/event-http";
import {
  applyOverrides,
  DirectoryRegistry,
  LambdaManager,
  lambdaLimitMaxima,
  type WorkerConfig,
} from "@openlambda/lambda-runtime";
import { request } from "undici";
import { consoleLogger, print, progress, table } from "../output.js";
import { cleanupLeftovers, makeBackend } from "../worker/backend.js";
import { effectiveConfig } from "../worker/config-file.js";
import { WorkerRunningError, WorkerStartError } from "../worker/errors.js";
import type { WorkerLayout } from "../worker/layout.js";
import {
  isAlive,
  liveWorker,
  readPidFile,
  removePidFile,
  writePidFile,
} from "../worker/pid-file.js";
import { initWorker } from "./init.js";

export interface UpOptions {
  readonly path: string;
  readonly option: readonly string[];
  readonly detach: boolean;
  readonly verbose: boolean;
}

export function workerUrl(config: WorkerConfig, port = config.worker_port): string {
  return `http://${config.worker_url}:${port}`;
}

export async function run(options: UpOptions): Promise<void> {
  const { layout, config: base } = await initWorker(options.path);
  const config = applyOverrides(base, options.option);
  const running = await liveWorker(layout);
  if (running)
    throw new WorkerRunningError(
      `a worker (pid ${running.pid}) already serves ${layout.dir} at ${running.url}`,
    );
  if (options.detach) return detach(layout, config, options);
  return foreground(layout, config, options);
}

async function foreground(
  layout: WorkerLayout,
  config: WorkerConfig,
  options: UpOptions,
): Promise<void> {
  const logger = consoleLogger(options.verbose ? "debug" : "info");
  // An earlier worker that died without cleaning up may have run another backend (-o sandbox=).
  const previous = await readPidFile(layout);
  const earlier = previous ? await effectiveConfig(layout, previous).catch(() => config) : config;
  for (const c of earlier.sandbox === config.sandbox ? [config] : [earlier, config]) {
    const leftovers = await cleanupLeftovers(c, layout, logger);
    if (Object.values(leftovers.removed).some((n) => n > 0)) {
      logger.warn(
        { backend: leftovers.backend, ...leftovers.removed },
        "removed what an earlier worker on this directory left behind",
      );
    }
  }
  const backend = await makeBackend(config, layout, logger);
  const registry = new DirectoryRegistry({
    dir: config.registry,
    codeCacheDir: layout.code,
    cacheMs: config.registry_cache_ms,
    // ol.yaml limits over limits.max_* are refused at upload and when first read.
    limitMaxima: lambdaLimitMaxima(config),
    logger: logger.child({ component: "registry" }),
  });
  await registry.init();
  const manager = new LambdaManager({ backend, registry, config, logger });
  await manager.start();
  const token = (await readFile(layout.token, "utf8")).trim();
  const trigger = httpTrigger({
    host: config.worker_url,
    port: config.worker_port,
    adminToken: token,
    bodyLimitBytes: config.body_limit_mb * 1024 * 1024,
    registry,
    introspection: manager,
    preparer: manager,
    logger,
  });
  try {
    await trigger.start(manager);
  } catch (error) {
    await manager.shutdown();
    throw error;
  }
  const address = trigger.address();
  const url = workerUrl(config, address.port);
  await writePidFile(layout, {
    pid: process.pid,
    url,
    startedAt: new Date().toISOString(),
    options: options.option,
  });
  const lambdas = await registry.list();
  print(
    table([
      ["worker", url],
      ["sandbox", config.sandbox],
      ["worker dir", layout.dir],
      [
        "registry",
        `${config.registry} (${lambdas.length} lambdas: ${lambdas.join(", ") || "none"})`,
      ],
      ["memory pool", `${config.mem_pool_mb} MiB`],
      ["try", `curl -d '"hi"' ${url}/run/echo`],
    ]),
  );
  logger.info({ url, pid: process.pid }, "worker ready");

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "stopping: finishing requests in flight, destroying sandboxes");
      void (async () => {
        try {
          await trigger.stop();
          await manager.shutdown();
          await cleanupLeftovers(config, layout, logger);
        } finally {
          await removePidFile(layout, process.pid);
          logger.info({}, "worker stopped");
          resolve();
        }
      })();
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}

/** Starts the worker in the background with its output in worker.log, and waits until ready. */
async function detach(
  layout: WorkerLayout,
  config: WorkerConfig,
  options: UpOptions,
): Promise<void> {
  const args = [process.argv[1] as string, "worker", "up", "-p", layout.dir];
  for (const o of options.option) args.push("-o", o);
  if (options.verbose) args.push("--verbose");
  const out = openSync(layout.log, "a");
  // A plain detached spawn: the worker must outlive this command.
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", out, out] });
  child.unref();
  const pid = child.pid as number;
  progress(`started worker pid ${pid}; log: ${layout.log}`);
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) break;
    const record = await readPidFile(layout);
    if (record?.pid === pid && (await isReady(record.url))) {
      print(
        table([
          ["worker", record.url],
          ["pid", pid],
          ["log", layout.log],
        ]),
      );
      return;
    }
    await sleep(200);
  }
  const tail = (await readFile(layout.log, "utf8").catch(() => ""))
    .split("\n")
    .slice(-15)
    .join("\n");
  if (isAlive(pid)) process.kill(pid, "SIGTERM");
  throw new WorkerStartError(
    `the worker did not become ready at ${workerUrl(config)}; last lines of ${layout.log}:\n${tail}`,
  );
}

export async function isReady(url: string): Promise<boolean> {
  try {
    const res = await request(`${url}/status`, { headersTimeout: 2000, bodyTimeout: 2000 });
    return res.statusCode === 200 && (await res.body.text()).trim() === "ready";
  } catch {
    return false;
  }
}
