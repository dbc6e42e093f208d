import { parse } from "yaml";
import type { LambdaConfig } from "./contracts.js";
import { InvalidLambdaConfigError } from "./errors.js";

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const TOP_KEYS = new Set(["triggers", "environment", "reuse-sandbox", "limits", "network"]);
const LIMIT_KEYS: Record<string, keyof LambdaConfig["limits"]> = {
  memory: "memMb",
  mem_mb: "memMb",
  cpu: "cpuPercent",
  cpu_percent: "cpuPercent",
  lambda_cpu_percent: "lambdaCpuPercent",
  procs: "procs",
  timeout: "runtimeSec",
  runtime_sec: "runtimeSec",
  disk: "diskMb",
  disk_mb: "diskMb",
};

/**
 * The most a lambda may ask for, per limit, and the worker config key that says so. Checked
 * when ol.yaml is read, so an upload over them is refused before anything is stored.
 */
export type LimitMaxima = {
  readonly [K in keyof LambdaConfig["limits"]]?: { readonly max: number; readonly key: string };
};

export const DEFAULT_LAMBDA_CONFIG: LambdaConfig = {
  triggers: { http: [], cron: [] },
  environment: {},
  reuseSandbox: true,
  limits: {},
};

/**
 * Parses a lambda's `ol.yaml` (OpenLambda's keys, plus `limits` and `network`); with `maxima`,
 * a limit over the worker's maximum is refused naming the key, the value and the maximum.
 */
export function parseLambdaConfig(text: string | undefined, maxima?: LimitMaxima): LambdaConfig {
  if (text === undefined || text.trim() === "") return DEFAULT_LAMBDA_CONFIG;
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (error) {
    throw new InvalidLambdaConfigError(`ol.yaml: not valid YAML: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (doc === null || doc === undefined) return DEFAULT_LAMBDA_CONFIG;
  const fail = (key: string, why: string): never => {
    throw new InvalidLambdaConfigError(`ol.yaml: ${key} ${why}`);
  };
  if (typeof doc !== "object" || Array.isArray(doc)) fail("document", "must be a mapping");
  const obj = doc as Record<string, unknown>;
  for (const key of Object.keys(obj)) if (!TOP_KEYS.has(key)) fail(key, "is not a known key");

  const http: { method?: string }[] = [];
  const cron: { schedule: string }[] = [];
  if (obj.triggers !== undefined && obj.triggers !== null) {
    if (typeof obj.triggers !== "object") fail("triggers", "must be a mapping");
    const t = obj.triggers as Record<string, unknown>;
    for (const [i, entry] of asList(t.http, "triggers.http", fail).entries()) {
      const method = (entry as { method?: unknown } | null)?.method;
      if (method === undefined) {
        http.push({});
        continue;
      }
      if (typeof method !== "string" || !METHODS.has(method.toUpperCase()))
        fail(
          `triggers.http[${i}].method`,
          `must be an HTTP method (got ${JSON.stringify(method)})`,
        );
      http.push({ method: (method as string).toUpperCase() });
    }
    for (const [i, entry] of asList(t.cron, "triggers.cron", fail).entries()) {
      const schedule = (entry as { schedule?: unknown } | null)?.schedule;
      if (typeof schedule !== "string") fail(`triggers.cron[${i}].schedule`, "must be a string");
      cron.push({ schedule: schedule as string });
    }
  }

  const environment: Record<string, string> = {};
  if (obj.environment !== undefined && obj.environment !== null) {
    if (typeof obj.environment !== "object" || Array.isArray(obj.environment))
      fail("environment", "must be a mapping");
    for (const [k, v] of Object.entries(obj.environment as Record<string, unknown>)) {
      if (!ENV_NAME.test(k)) fail(`environment.${k}`, "is not a valid variable name");
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")
        fail(`environment.${k}`, "must be a string, number or boolean");
      environment[k] = String(v);
    }
  }

  let reuseSandbox = true;
  if (obj["reuse-sandbox"] !== undefined) {
    if (typeof obj["reuse-sandbox"] !== "boolean") fail("reuse-sandbox", "must be true or false");
    reuseSandbox = obj["reuse-sandbox"] as boolean;
  }

  const limits: { -readonly [K in keyof LambdaConfig["limits"]]: number } = {};
  if (obj.limits !== undefined && obj.limits !== null) {
    if (typeof obj.limits !== "object" || Array.isArray(obj.limits))
      fail("limits", "must be a mapping");
    for (const [k, v] of Object.entries(obj.limits as Record<string, unknown>)) {
      const target = LIMIT_KEYS[k];
      if (!target)
        fail(`limits.${k}`, `is not a known limit (use ${Object.keys(LIMIT_KEYS).join(", ")})`);
      if (!Number.isInteger(v) || (v as number) < 1)
        fail(`limits.${k}`, "must be a positive integer");
      const bound = maxima?.[target as keyof LimitMaxima];
      if (bound && (v as number) > bound.max)
        fail(
          `limits.${k}`,
          `is ${v as number}, over the worker's maximum of ${bound.max} (config ${bound.key})`,
        );
      limits[target as keyof typeof limits] = v as number;
    }
  }

  let network: "egress" | "host" | "none" | undefined;
  if (obj.network !== undefined) {
    if (obj.network !== "egress" && obj.network !== "host" && obj.network !== "none")
      fail("network", "must be egress, host or none");
    network = obj.network as "egress" | "host" | "none";
  }

  return {
    triggers: { http, cron },
    environment,
    reuseSandbox,
    limits,
    ...(network ? { network } : {}),
  };
}

function asList(value: unknown, key: string, fail: (k: string, w: string) => never): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(key, "must be a list");
  return value as unknown[];
}

/** The methods a lambda allows, or undefined for any. */
export function allowedMethods(config: LambdaConfig): readonly string[] | undefined {
  const methods = config.triggers.http.map((t) => t.method);
  if (methods.length === 0 || methods.some((m) => m === undefined)) return undefined;
  return [...new Set(methods as string[])];
}
