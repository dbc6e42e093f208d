import { accessSync, constants } from "node:fs";
import { fileURLToPath } from "node:url";
import { SockHelperMissingError } from "./errors.js";

/**
 * Where the built helper lives: next to this module in `dist/` (tsup bundles every module into
 * dist/index.js, and the build compiles the helper into dist/ too). From `src/` (tests run on
 * sources) it is `../dist/`.
 */
const CANDIDATES = ["./ol-sock-helper", "../dist/ol-sock-helper"];

/** The helper's absolute path; throws `SockHelperMissingError` saying what is wrong. */
export function locateHelper(override?: string): string {
  // Other Linux architectures work when the package is built there (a C compiler builds the
  // helper); only linux-x64 ships a ready binary.
  if (process.platform !== "linux") {
    throw new SockHelperMissingError(
      `the SOCK backend runs on Linux only (this is ${process.platform}-${process.arch}); use the Docker backend`,
    );
  }
  const paths = override
    ? [override]
    : CANDIDATES.map((c) => fileURLToPath(new URL(c, import.meta.url)));
  for (const path of paths) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Try the next one.
    }
  }
  throw new SockHelperMissingError(
    `the SOCK helper binary is missing (looked at ${paths.join(", ")}); ` +
      (process.arch === "x64"
        ? "reinstall @openlambda/sandbox-sock or rebuild it with a C compiler (pnpm build)"
        : `only linux-x64 ships a built helper; on ${process.arch} build the package with a C compiler (cc) installed`),
  );
}
