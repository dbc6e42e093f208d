import { lstat, realpath, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { build, type Message } from "esbuild";
import { LambdaBuildError } from "../errors.js";
import { confineBuild } from "./confine-build.js";
import { isInside } from "./contained-file.js";
import { lambdaTsconfig } from "./lambda-tsconfig.js";

/** Where a TypeScript lambda's compiled entry goes, beside its sources. */
export const COMPILED_ENTRY = "f.compiled.mjs";

/**
 * Compiles `f.ts` and the files it imports into one ES module, `f.compiled.mjs`, leaving
 * packages as imports. esbuild runs in its own process, so the worker's event loop keeps
 * serving meanwhile. A type-stripping compiler, not a type checker: what fails is syntax and
 * unresolvable imports, reported with file and line.
 *
 * The build runs as the worker, so it is kept to the lambda's own files (see confineBuild and
 * lambdaTsconfig): an import that leads outside the directory, by absolute path, `..`, a
 * symlink or tsconfig, is refused with OL_LAMBDA_BUILD_FAILED naming the import and its file.
 */
export async function compileTypeScript(dir: string): Promise<boolean> {
  const entry = join(dir, "f.ts");
  if (
    !(await lstat(entry).then(
      () => true,
      () => false,
    ))
  )
    return false;
  const root = await realpath(dir);
  const outfile = join(root, COMPILED_ENTRY);
  const tsconfigRaw = await lambdaTsconfig(root);
  let outputs: { path: string; contents: Uint8Array }[];
  try {
    const result = await build({
      entryPoints: [join(root, "f.ts")],
      outfile,
      bundle: true,
      packages: "external",
      platform: "node",
      format: "esm",
      target: "node22",
      logLevel: "silent",
      sourcemap: "inline",
      absWorkingDir: root,
      tsconfigRaw,
      plugins: [confineBuild(root)],
      // Written below: esbuild would follow a symlink planted where the output goes.
      write: false,
    });
    outputs = result.outputFiles;
  } catch (error) {
    const messages = ((error as { errors?: Message[] }).errors ?? []).slice(0, 5).map((m) => {
      const where = m.location
        ? `${relative(root, join(root, m.location.file)) || m.location.file}:${m.location.line}:${m.location.column + 1}: `
        : "";
      return `${where}${m.text}`;
    });
    throw new LambdaBuildError(`TypeScript: ${messages.join("; ") || (error as Error).message}`, {
      cause: error,
    });
  }
  for (const output of outputs) {
    if (!isInside(root, output.path)) {
      throw new LambdaBuildError(
        `TypeScript: an output would go outside the lambda: ${output.path}`,
      );
    }
    // Removing first and creating exclusively never writes through a link left in the dir.
    try {
      await rm(output.path, { force: true });
      await writeFile(output.path, output.contents, { flag: "wx", mode: 0o644 });
    } catch (error) {
      throw new LambdaBuildError(
        `TypeScript: cannot write ${relative(root, output.path)}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return true;
}
