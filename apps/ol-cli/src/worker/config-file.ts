import { readFile, writeFile } from "node:fs/promises";
import {
  applyOverrides,
  defaultWorkerConfig,
  parseWorkerConfig,
  type WorkerConfig,
} from "@openlambda/lambda-runtime";
import { WorkerNotInitialisedError } from "./errors.js";
import type { WorkerLayout } from "./layout.js";
import type { PidRecord } from "./pid-file.js";

export async function readWorkerConfig(layout: WorkerLayout): Promise<WorkerConfig> {
  let text: string;
  try {
    text = await readFile(layout.config, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new WorkerNotInitialisedError(
        `${layout.config} does not exist; run: ol worker init -p ${layout.dir}`,
      );
    }
    throw error;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new WorkerNotInitialisedError(
      `${layout.config} is not valid JSON: ${(error as Error).message}`,
    );
  }
  return parseWorkerConfig(raw, layout.dir);
}

/** Writes a new config.json with every field and its default, so operators see what exists. */
export async function writeDefaultConfig(layout: WorkerLayout): Promise<WorkerConfig> {
  const config = defaultWorkerConfig(layout.dir);
  await writeFile(layout.config, `${JSON.stringify(config, null, 2)}\n`, { flag: "wx" });
  return config;
}

/**
 * The config a worker runs (or ran) with: config.json plus the `-o` overrides recorded in its
 * pid file. Without a record, config.json alone.
 */
export async function effectiveConfig(
  layout: WorkerLayout,
  record: PidRecord | undefined,
): Promise<WorkerConfig> {
  return applyOverrides(await readWorkerConfig(layout), record?.options ?? []);
}
