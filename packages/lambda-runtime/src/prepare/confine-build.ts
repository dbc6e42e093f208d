import { dirname, isAbsolute, relative, resolve } from "node:path";
import type { Loader, OnLoadResult, OnResolveResult, PartialMessage, Plugin } from "esbuild";
import { checkComputedImports, scriptLoaderFor } from "./computed-imports.js";
import { MAX_SOURCE_BYTES, readContainedFile, realPathInside } from "./contained-file.js";

/** Marks the plugin's own calls to esbuild's resolver, which come back through onResolve. */
const INNER = Symbol("ol-confine-inner");

/**
 * An esbuild plugin that keeps a build inside one directory (`root`, a real path): the build
 * runs as the worker, so anything it reads could end up in the lambda's output. Every import is
 * resolved by esbuild (extensions, index files, tsconfig `paths`, package.json `imports`) and
 * the result checked: a file must really lie inside `root` once symlinks are resolved; an
 * absolute import path is refused outright; packages stay external, so node_modules are never
 * read. Every file esbuild loads is read by the plugin itself, after the same check, so nothing
 * reaches the output without it (esbuild's glob imports skip onResolve; see computed-imports).
 */
export function confineBuild(root: string): Plugin {
  const shown = (path: string) => relative(root, path) || path;
  return {
    name: "ol-confine",
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args): Promise<OnResolveResult | undefined> => {
        if (args.pluginData === INNER) return undefined;
        const refuse = (why: string): OnResolveResult => ({
          errors: [{ text: `${describe(args.kind)} "${args.path}" ${why}` }],
        });
        if (args.kind === "entry-point") {
          const real = await realPathInside(root, resolve(args.resolveDir, args.path));
          return real ? { path: real } : refuse("leads outside the lambda's directory");
        }
        if (isAbsolute(args.path) || /^file:/i.test(args.path)) {
          return refuse(
            `in ${shown(args.importer)} is an absolute path: a lambda imports its own files by relative path`,
          );
        }
        const result = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          with: args.with,
          pluginData: INNER,
        });
        if (result.errors.length > 0) return { errors: result.errors, warnings: result.warnings };
        // A package (left for the sandbox's node_modules at run time), or a data: URL.
        if (result.external || result.namespace !== "file") {
          return {
            path: result.path,
            external: result.external,
            namespace: result.namespace,
            suffix: result.suffix,
            sideEffects: result.sideEffects,
          };
        }
        const real = await realPathInside(root, result.path);
        if (!real) {
          return refuse(`in ${shown(args.importer)} leads outside the lambda's directory`);
        }
        return { path: real, suffix: result.suffix, sideEffects: result.sideEffects };
      });

      build.onLoad({ filter: /.*/, namespace: "file" }, async (args): Promise<OnLoadResult> => {
        const loader = loaderFor(args.with);
        if (typeof loader !== "string") return { errors: [loader] };
        const read = await readContainedFile(root, args.path);
        if (!read.ok) {
          const why = {
            outside: "is outside the lambda's directory",
            "not-a-file": "is not a regular file",
            "too-large": `is larger than ${MAX_SOURCE_BYTES / 1024 / 1024} MiB`,
          }[read.why];
          return { errors: [{ text: `the build reads ${shown(args.path)}, which ${why}` }] };
        }
        const script = loader === "default" ? scriptLoaderFor(read.path) : undefined;
        if (script) {
          const file = shown(read.path);
          const check = await checkComputedImports(read.contents, script, file);
          if (!check.ok) {
            if ("errors" in check) return { errors: check.errors };
            return {
              errors: check.found.map((call) => ({
                text: `${file}: ${call} builds its path from pieces, which esbuild expands by listing directories at build time; import a literal relative path instead (or a path held in a variable, resolved at run time)`,
              })),
            };
          }
        }
        return { contents: read.contents, loader, resolveDir: dirname(read.path) };
      });
    },
  };
}

const TYPE_LOADERS = new Map<string, Loader>([
  ["json", "json"],
  ["text", "text"],
  ["bytes", "binary"],
]);

/** The loader an import's `with { type }` asks for, as esbuild itself maps it. */
function loaderFor(attributes: Readonly<Record<string, string>>): Loader | PartialMessage {
  let loader: Loader = "default";
  for (const [key, value] of Object.entries(attributes)) {
    if (key !== "type") return { text: `Importing with the "${key}" attribute is not supported` };
    const mapped = TYPE_LOADERS.get(value);
    if (!mapped) return { text: `Importing with a type attribute of "${value}" is not supported` };
    loader = mapped;
  }
  return loader;
}

function describe(kind: string): string {
  switch (kind) {
    case "entry-point":
      return "the entry";
    case "require-call":
    case "require-resolve":
      return "require";
    case "dynamic-import":
      return "import()";
    case "import-rule":
      return "CSS @import";
    case "url-token":
    case "composes-from":
      return "CSS url";
    default:
      return "import";
  }
}
