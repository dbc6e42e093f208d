import { readFile } from "node:fs/promises";
import { InvalidWorkerConfigError } from "../errors.js";

/** One package a tree node pre-imports: `name` or `name@range` (npm syntax). */
export interface TreePackage {
  readonly name: string;
  readonly range: string;
}

export interface TreeNode {
  /** Stable id: the path of child indexes from the root (`0`, `0.2`, ...). */
  readonly id: string;
  /** This node's packages only. */
  readonly packages: readonly TreePackage[];
  /** This node's and its ancestors' packages: what its ready runtimes have imported. */
  readonly allPackages: readonly TreePackage[];
  readonly depth: number;
  readonly children: readonly TreeNode[];
}

/**
 * The import-cache tree, in OpenLambda's format: `{"packages": [...], "children": [...]}`, the
 * root without packages. The default holds a few packages many Node lambdas use.
 */
export const DEFAULT_TREE = {
  packages: [],
  children: [
    { packages: ["lodash@^4.17.21"] },
    { packages: ["uuid@^11.0.0"] },
    { packages: ["dayjs@^1.11.0"] },
  ],
};

export function parseTree(raw: unknown, where = "import_cache_tree"): TreeNode {
  const build = (
    value: unknown,
    id: string,
    depth: number,
    inherited: readonly TreePackage[],
  ): TreeNode => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new InvalidWorkerConfigError(
        `${where}: node ${id} must be an object with packages and children`,
      );
    }
    const node = value as { packages?: unknown; children?: unknown };
    const packages = (node.packages ?? []) as unknown[];
    const children = (node.children ?? []) as unknown[];
    if (!Array.isArray(packages) || !Array.isArray(children)) {
      throw new InvalidWorkerConfigError(
        `${where}: node ${id}: packages and children must be lists`,
      );
    }
    if (depth === 0 && packages.length > 0) {
      throw new InvalidWorkerConfigError(`${where}: the root node must have no packages`);
    }
    const own = packages.map((p) => parsePackage(p, `${where}: node ${id}`));
    const all = [...inherited, ...own];
    return {
      id,
      packages: own,
      allPackages: all,
      depth,
      children: children.map((c, i) =>
        build(c, id === "root" ? String(i) : `${id}.${i}`, depth + 1, all),
      ),
    };
  };
  return build(raw, "root", 0, []);
}

export async function loadTree(path: string): Promise<TreeNode> {
  if (path === "") return parseTree(DEFAULT_TREE, "the default tree");
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new InvalidWorkerConfigError(
      `import_cache_tree: cannot read ${path}: ${(error as Error).message}`,
    );
  }
  return parseTree(raw, `import_cache_tree (${path})`);
}

function parsePackage(value: unknown, where: string): TreePackage {
  if (typeof value !== "string" || value === "")
    throw new InvalidWorkerConfigError(`${where}: packages must be strings`);
  const at = value.lastIndexOf("@");
  if (at > 0) return { name: value.slice(0, at), range: value.slice(at + 1) || "*" };
  return { name: value, range: "*" };
}

export function* walk(node: TreeNode): Generator<TreeNode> {
  yield node;
  for (const child of node.children) yield* walk(child);
}
