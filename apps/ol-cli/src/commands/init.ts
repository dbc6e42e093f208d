import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { WorkerConfig } from "@openlambda/lambda-runtime";
import { buildBaseRootfs } from "@openlambda/sandbox-sock";
import { progress } from "../output.js";
import { readWorkerConfig, writeDefaultConfig } from "../worker/config-file.js";
import { type WorkerLayout, workerLayout } from "../worker/layout.js";

export interface InitResult {
  readonly layout: WorkerLayout;
  readonly config: WorkerConfig;
  readonly created: boolean;
}

/**
 * Makes (or completes) a worker directory: config.json with every field at its default, the
 * admin token (0600), the registry seeded with the example lambdas, and the base root
 * filesystem. An existing config is kept as it is; the base is rebuilt only when it changed.
 */
export async function initWorker(dir: string): Promise<InitResult> {
  const layout = workerLayout(dir);
  await mkdir(layout.dir, { recursive: true });
  const created = !(await exists(layout.config));
  const config = created ? await writeDefaultConfig(layout) : await readWorkerConfig(layout);
  if (created) progress(`wrote ${layout.config}`);
  if (!(await exists(layout.token))) {
    await writeFile(layout.token, `${randomBytes(32).toString("hex")}\n`, {
      mode: 0o600,
      flag: "wx",
    });
    progress(`wrote the admin token to ${layout.token} (mode 0600)`);
  }
  if (!(await exists(config.registry))) {
    await mkdir(config.registry, { recursive: true });
    const examples = examplesDir();
    if (examples) {
      for (const name of await readdir(examples)) {
        await cp(join(examples, name), join(config.registry, name), { recursive: true });
      }
      progress(
        `seeded the registry ${config.registry} with the examples: ${(await readdir(examples)).join(", ")}`,
      );
    }
  }
  if (config.sandbox === "sock" || !config.docker.base_image) {
    progress(`base root filesystem at ${layout.base}`);
    const started = Date.now();
    const base = await buildBaseRootfs({ dir: layout.base, onProgress: (m) => progress(`  ${m}`) });
    progress(
      `base ready (${base.hash.slice(0, 12)}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }
  return { layout, config, created };
}

/** The example lambdas shipped with the CLI (dist/examples), or the repo's when run from source. */
function examplesDir(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    join(here, "examples"),
    join(here, "..", "examples"),
    join(here, "..", "..", "..", "examples"),
  ];
  return candidates.find((dir) => existsSync(join(dir, "echo")));
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export async function run(options: { path: string }): Promise<void> {
  const { layout, created } = await initWorker(options.path);
  progress(
    created
      ? `worker directory ready: ${layout.dir}`
      : `worker directory already initialised: ${layout.dir}`,
  );
}
