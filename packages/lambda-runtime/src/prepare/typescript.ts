import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import { build, type Message } from "esbuild";
import { LambdaBuildError } from "../errors.js";

/** Where a TypeScript lambda's compiled entry goes, beside its sources. */
export const COMPILED_ENTRY = "f.compiled.mjs";

/**
 * Compiles `f.ts` and the `.ts` files it imports into one ES module, `f.compiled.mjs`, leaving
 * packages (node_modules) as imports. esbuild runs in its own process, so the worker's event
 * loop keeps serving meanwhile. A type-stripping compiler, not a type checker: what fails is
 * syntax and unresolvable relative imports, reported with file and line.
 */
export async function compileTypeScript(dir: string): Promise<boolean> {
  const entry = join(dir, "f.ts");
  if (!existsSync(entry)) return false;
  try {
    await build({
      entryPoints: [entry],
      outfile: join(dir, COMPILED_ENTRY),
      bundle: true,
      packages: "external",
      platform: "node",
      format: "esm",
      target: "node22",
      logLevel: "silent",
      sourcemap: "inline",
      absWorkingDir: dir,
    });
  } catch (error) {
    const messages = ((error as { errors?: Message[] }).errors ?? []).slice(0, 5).map((m) => {
      const where = m.location
        ? `${relative(dir, join(dir, m.location.file)) || m.location.file}:${m.location.line}:${m.location.column + 1}: `
        : "";
      return `${where}${m.text}`;
    });
    throw new LambdaBuildError(`TypeScript: ${messages.join("; ") || (error as Error).message}`, {
      cause: error,
    });
  }
  return true;
}
