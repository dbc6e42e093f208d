import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** bench/ */
export const BENCH_DIR = resolve(here, "..", "..");
export const RESULTS_DIR = join(BENCH_DIR, "results");
/** Plain JS servers and clients started as child processes (no TypeScript loader in them). */
export const SERVERS_DIR = join(BENCH_DIR, "servers");
export const require = createRequire(import.meta.url);

/** The `ol` CLI's entry, resolved through its package name like any user of it would. */
export function cliBin(): string {
  return join(dirname(require.resolve("@openlambda/cli/package.json")), "dist", "bin.js");
}

/** The Node that runs the bench also runs every Node child (never /usr/bin/node). */
export const NODE = process.execPath;

/** Where every scenario keeps its scratch worker dirs; removed at the end. */
export const SCRATCH_ROOT = "/tmp/ol-bench";
