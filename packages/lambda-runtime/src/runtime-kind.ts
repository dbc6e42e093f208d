import { existsSync } from "node:fs";
import { join } from "node:path";
import { LambdaLoadError } from "./errors.js";
import type { LambdaCode } from "./registry/directory-registry.js";

export type LambdaRuntime = "node" | "python";

const NODE_ENTRIES = ["f.compiled.mjs", "f.mjs", "f.js", "f.cjs"];
const PYTHON_ENV = ["OL_ENTRY_FILE", "OL_WSGI_ENTRY", "OL_ASGI_ENTRY"];

/** Which guest runtime runs a lambda version, from the files at its root and its ol.yaml env. */
export function detectRuntime(code: LambdaCode): LambdaRuntime {
  if (NODE_ENTRIES.some((f) => existsSync(join(code.dir, f)))) return "node";
  if (existsSync(join(code.dir, "f.py")) || PYTHON_ENV.some((k) => k in code.config.environment))
    return "python";
  throw new LambdaLoadError(
    `lambda ${code.name}: no entry file at the root of its code (expected ${NODE_ENTRIES.slice(1).join(", ")}, f.ts or f.py)`,
  );
}
