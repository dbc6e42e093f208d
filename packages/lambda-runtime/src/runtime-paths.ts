import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The host directory holding the bundled Node guest runtime (`node-guest.js`). It is exposed
 * read-only inside sandboxes at /packages/ol-runtime. Found next to this module in `dist/`.
 */
export function nodeGuestRuntimeDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [here, join(here, "..", "dist")]) {
    if (existsSync(join(dir, "node-guest.js"))) return dir;
  }
  throw new Error(
    `the Node guest runtime (node-guest.js) is missing near ${here}; build @openlambda/lambda-runtime`,
  );
}
