import { lstat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type Node, type ParseError, parseTree, printParseErrorCode } from "jsonc-parser";
import { LambdaBuildError } from "../errors.js";
import { isInside, readContainedFile, realPathInside } from "./contained-file.js";

/** What esbuild is given when a lambda has no tsconfig.json: settings of its own, never a parent's. */
const NO_TSCONFIG = "{}";

/**
 * The tsconfig text a lambda's build uses (esbuild's `tsconfigRaw`): its own tsconfig.json,
 * checked, or an empty one. Passing it as text stops esbuild from searching the parent
 * directories for a tsconfig.json, whose `paths` would then apply to the lambda. esbuild reads
 * `extends` targets itself, where no plugin sees them, so `extends` is refused; `baseUrl` and
 * `paths` must stay inside the lambda (where an import then lands is checked again on resolve).
 * `root` is the lambda's real path.
 */
export async function lambdaTsconfig(root: string): Promise<string> {
  const path = join(root, "tsconfig.json");
  try {
    await lstat(path);
  } catch {
    return NO_TSCONFIG;
  }
  const read = await readContainedFile(root, path);
  if (!read.ok) {
    const why = {
      outside: "leads outside the lambda's directory",
      "not-a-file": "is not a regular file",
      "too-large": "is too large",
    }[read.why];
    throw refuse(`tsconfig.json ${why}`);
  }
  const text = Buffer.from(read.contents).toString("utf8");
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  const [first] = errors;
  if (first || tree?.type !== "object") {
    throw refuse(
      `tsconfig.json is not a JSON object${first ? ` (${printParseErrorCode(first.error)} at offset ${first.offset})` : ""}`,
    );
  }
  // Every occurrence counts: with a key given twice, esbuild and this parser need not agree on
  // which one wins.
  let baseUrl: string | undefined;
  const paths: { key: string; target: string }[] = [];
  for (const [key, value] of properties(tree)) {
    if (key === "extends") {
      throw refuse(
        `tsconfig.json: "extends" is not supported: a lambda's build reads only its own tsconfig.json`,
      );
    }
    if (key !== "compilerOptions" || value.type !== "object") continue;
    for (const [option, setting] of properties(value)) {
      if (option === "baseUrl" && setting.type === "string") {
        const url = String(setting.value);
        await assertInside(root, root, url, `compilerOptions.baseUrl "${url}"`);
        baseUrl = url;
      }
      if (option === "paths" && setting.type === "object") {
        for (const [pattern, targets] of properties(setting)) {
          for (const target of targets.children ?? []) {
            if (target.type === "string")
              paths.push({ key: pattern, target: String(target.value) });
          }
        }
      }
    }
  }
  const base = baseUrl === undefined ? root : resolve(root, withConfigDir(baseUrl));
  for (const { key, target } of paths) {
    // A "*" stands for what the import supplies, checked when the import resolves.
    await assertInside(
      root,
      base,
      target.replaceAll("*", ""),
      `compilerOptions.paths[${JSON.stringify(key)}] "${target}"`,
    );
  }
  return text;
}

/** An object node's properties as (key, value) pairs, keys decoded. */
function* properties(node: Node): Generator<[string, Node]> {
  for (const property of node.children ?? []) {
    const [key, value] = property.children ?? [];
    if (key && value) yield [String(key.value), value];
  }
}

const CONFIG_DIR = "$" + "{configDir}";

/** TypeScript's `${configDir}` (the dir holding tsconfig.json), as esbuild reads it. */
function withConfigDir(path: string): string {
  return path.startsWith(CONFIG_DIR) ? `./${path.slice(CONFIG_DIR.length)}` : path;
}

async function assertInside(root: string, base: string, path: string, what: string): Promise<void> {
  const target = resolve(base, withConfigDir(path));
  if (!isInside(root, target)) {
    throw refuse(`tsconfig.json: ${what} leads outside the lambda's directory`);
  }
  // Inside by name; a symlink on the way may still lead out.
  const exists = await lstat(target).then(
    () => true,
    () => false,
  );
  if (exists && !(await realPathInside(root, target))) {
    throw refuse(`tsconfig.json: ${what} leads outside the lambda's directory (through a symlink)`);
  }
}

function refuse(text: string): LambdaBuildError {
  return new LambdaBuildError(`TypeScript: ${text}`);
}
