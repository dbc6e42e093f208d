import { parse } from "acorn";
import { type Message, transform } from "esbuild";

/** The loaders whose files can hold import() and require() calls. */
export type ScriptLoader = "js" | "jsx" | "ts" | "tsx";

const SCRIPT_LOADERS: Readonly<Record<string, ScriptLoader>> = {
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
};

/** The script loader esbuild picks for a file name by default, if it is a script. */
export function scriptLoaderFor(path: string): ScriptLoader | undefined {
  const dot = path.lastIndexOf(".");
  return dot < 0 ? undefined : SCRIPT_LOADERS[path.slice(dot).toLowerCase()];
}

export type ComputedImportCheck =
  | { readonly ok: true }
  /** The file does not compile: esbuild's own messages, with file, line and column. */
  | { readonly ok: false; readonly errors: Message[] }
  /** The import() or require() calls whose path is built from pieces, as written. */
  | { readonly ok: false; readonly found: readonly string[] };

/**
 * Finds `import()` and `require()` calls whose path is a template with `${}` or a `+` of
 * pieces. When bundling, esbuild turns such a call into a glob and lists directories to expand
 * it before any plugin sees a path, and `../` in the pattern lists them outside the lambda (up
 * to the whole file system). The check is on esbuild's own type-stripped output, so TypeScript
 * syntax cannot hide a call, and it errs on the side of refusing: any `+` counts, since
 * TypeScript enums inlined across files can turn an innocent-looking operand into `../`.
 */
export async function checkComputedImports(
  source: Uint8Array,
  loader: ScriptLoader,
  sourcefile: string,
): Promise<ComputedImportCheck> {
  let code: string;
  try {
    // Decorators lowered: acorn does not parse them yet.
    ({ code } = await transform(source, {
      loader,
      sourcefile,
      target: "esnext",
      supported: { decorators: false },
      logLevel: "silent",
    }));
  } catch (error) {
    return { ok: false, errors: (error as { errors?: Message[] }).errors ?? [] };
  }
  let program: unknown;
  const options = {
    ecmaVersion: "latest",
    allowHashBang: true,
    allowReturnOutsideFunction: true,
    allowAwaitOutsideFunction: true,
    allowImportExportEverywhere: true,
  } as const;
  try {
    program = parse(code, { ...options, sourceType: "module" });
  } catch {
    try {
      // A CommonJS file may use what modules forbid (with, legacy octals).
      program = parse(code, { ...options, sourceType: "script" });
    } catch (error) {
      return {
        ok: false,
        found: [
          `(a file esbuild reads but that could not be checked: ${(error as Error).message})`,
        ],
      };
    }
  }
  const found: string[] = [];
  visit(program, (node) => {
    const arg = importArgument(node);
    if (arg && isComputed(arg)) found.push(snippet(code.slice(node.start, node.end)));
  });
  return found.length === 0 ? { ok: true } : { ok: false, found };
}

interface EstreeNode {
  readonly type: string;
  readonly start: number;
  readonly end: number;
  readonly [key: string]: unknown;
}

function isNode(value: unknown): value is EstreeNode {
  return (
    typeof value === "object" && value !== null && typeof (value as EstreeNode).type === "string"
  );
}

/** Every node of the tree, without recursion (a deeply nested file cannot overflow the stack). */
function visit(root: unknown, onNode: (node: EstreeNode) => void): void {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) stack.push(...value);
    else if (isNode(value)) {
      onNode(value);
      for (const child of Object.values(value)) if (typeof child === "object") stack.push(child);
    }
  }
}

/** The path argument of `import(x)`, `require(x)` or `require.resolve(x)`. */
function importArgument(node: EstreeNode): EstreeNode | undefined {
  if (node.type === "ImportExpression") return isNode(node.source) ? node.source : undefined;
  if (node.type !== "CallExpression") return undefined;
  const callee = node.callee as EstreeNode;
  const isRequire =
    (callee.type === "Identifier" && callee.name === "require") ||
    (callee.type === "MemberExpression" &&
      (callee.object as EstreeNode).type === "Identifier" &&
      (callee.object as EstreeNode).name === "require");
  const first = (node.arguments as unknown[])[0];
  return isRequire && isNode(first) ? first : undefined;
}

/** What esbuild would expand as a glob; both branches of `c ? a : b` count, as esbuild splits it. */
function isComputed(node: EstreeNode): boolean {
  switch (node.type) {
    case "ConditionalExpression":
      return isComputed(node.consequent as EstreeNode) || isComputed(node.alternate as EstreeNode);
    case "TemplateLiteral":
      return (node.expressions as unknown[]).length > 0;
    case "BinaryExpression":
      return node.operator === "+";
    default:
      return false;
  }
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, " ");
  return flat.length > 120 ? `${flat.slice(0, 117)}...` : flat;
}
