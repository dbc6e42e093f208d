import { isAbsolute, join, resolve } from "node:path";
import { InvalidWorkerConfigError } from "./errors.js";

/**
 * The worker's config.json. Field names and defaults follow OpenLambda where it has them; the
 * rest is ours and documented in docs/deploying.md. Unknown keys and bad values are refused with
 * a message naming the key.
 */
export interface WorkerConfig {
  /** Where the worker keeps its state (scratch dirs, code cache, token, pid file). */
  worker_dir: string;
  worker_url: string;
  worker_port: number;
  sandbox: "sock" | "docker";
  /** Directory of NAME.tar.gz files and plain NAME directories. */
  registry: string;
  registry_cache_ms: number;
  /** Memory all sandboxes together may have, MiB. */
  mem_pool_mb: number;
  /** Path of the zygote tree JSON, or "" for none. */
  import_cache_tree: string;
  /** Largest request body for /run, MiB. */
  body_limit_mb: number;
  /** Requests a lambda may hold queued before it answers 429. */
  queue_size: number;
  /** Most sandboxes one lambda may scale out to. */
  max_instances: number;
  /** Requests one Node sandbox serves at once (1: OpenLambda's one at a time). */
  instance_concurrency: number;
  /** How long an idle instance stays running before it is paused, ms (0: at once). */
  pause_idle_ms: number;
  limits: {
    procs: number;
    /** Memory per sandbox for Python lambdas (OpenLambda's default), MiB. */
    mem_mb: number;
    /** Memory per sandbox for Node lambdas, MiB: Node needs more than OpenLambda's 50. */
    node_mem_mb: number;
    /** Processes and threads per Node sandbox: Node's runtime alone runs about a dozen threads. */
    node_procs: number;
    cpu_percent: number;
    runtime_sec: number;
    /**
     * CPU for all of one lambda's sandboxes together, percent of one core; under contention
     * every lambda gets the same share. A lambda's ol.yaml may only lower it.
     */
    lambda_cpu_percent: number;
    /**
     * What a sandbox's /tmp and /host may hold together, MiB. They are tmpfs: each lambda's
     * memory limit (and its share of the pool) grows by this much.
     */
    disk_mb: number;
    /** The most a lambda's ol.yaml may ask for; uploads over them are refused. */
    max_mem_mb: number;
    max_cpu_percent: number;
    max_procs: number;
    max_runtime_sec: number;
    max_disk_mb: number;
  };
  installer_limits: { procs: number; mem_mb: number; cpu_percent: number; runtime_sec: number };
  /** pip's index URL for requirements.txt: "" for pip's default (PyPI), "none" for no index. */
  pip_index: string;
  /** A directory of wheels and sdists pip may install from (`--find-links`), or "". */
  pip_find_links: string;
  features: {
    import_cache: string;
    downsize_paused_mem: boolean;
    reuse_cgroups: boolean;
    enable_seccomp: boolean;
  };
  docker: { base_image: string };
  /** The network of lambdas whose ol.yaml names none: auto is egress where the backend has it. */
  default_network: "auto" | "egress" | "host" | "none";
  /** SOCK egress sandboxes' links are carved from this IPv4 block, a /30 each. */
  egress_subnet: string;
  /** Host uids for guests, one per live sandbox: `first` .. `first + count - 1`. */
  sandbox_uids: { first: number; count: number };
}

export function defaultWorkerConfig(workerDir: string): WorkerConfig {
  const dir = resolve(workerDir);
  return {
    worker_dir: dir,
    worker_url: "localhost",
    worker_port: 5000,
    sandbox: "sock",
    registry: join(dir, "registry"),
    registry_cache_ms: 5000,
    mem_pool_mb: 4096,
    import_cache_tree: "",
    body_limit_mb: 6,
    queue_size: 100,
    max_instances: 4,
    instance_concurrency: 8,
    pause_idle_ms: 100,
    limits: {
      procs: 10,
      mem_mb: 50,
      node_mem_mb: 128,
      node_procs: 32,
      cpu_percent: 100,
      runtime_sec: 30,
      lambda_cpu_percent: 100,
      disk_mb: 32,
      max_mem_mb: 1024,
      max_cpu_percent: 400,
      max_procs: 256,
      max_runtime_sec: 900,
      max_disk_mb: 512,
    },
    installer_limits: { procs: 64, mem_mb: 1024, cpu_percent: 100, runtime_sec: 300 },
    pip_index: "",
    pip_find_links: "",
    features: {
      import_cache: "tree",
      downsize_paused_mem: true,
      reuse_cgroups: true,
      enable_seccomp: true,
    },
    docker: { base_image: "" },
    default_network: "auto",
    egress_subnet: "10.201.0.0/16",
    sandbox_uids: { first: 1_000_000, count: 65_536 },
  };
}

type Rule = "string" | "path" | "port" | "posint" | "nonneg" | "bool" | readonly string[];

const RULES: Record<string, Rule> = {
  worker_dir: "path",
  worker_url: "string",
  worker_port: "port",
  sandbox: ["sock", "docker"],
  registry: "path",
  registry_cache_ms: "nonneg",
  mem_pool_mb: "posint",
  import_cache_tree: "string",
  body_limit_mb: "posint",
  queue_size: "posint",
  max_instances: "posint",
  instance_concurrency: "posint",
  pause_idle_ms: "nonneg",
  "limits.procs": "posint",
  "limits.mem_mb": "posint",
  "limits.node_mem_mb": "posint",
  "limits.node_procs": "posint",
  "limits.cpu_percent": "posint",
  "limits.runtime_sec": "posint",
  "limits.lambda_cpu_percent": "posint",
  "limits.disk_mb": "posint",
  "limits.max_mem_mb": "posint",
  "limits.max_cpu_percent": "posint",
  "limits.max_procs": "posint",
  "limits.max_runtime_sec": "posint",
  "limits.max_disk_mb": "posint",
  "installer_limits.procs": "posint",
  "installer_limits.mem_mb": "posint",
  "installer_limits.cpu_percent": "posint",
  "installer_limits.runtime_sec": "posint",
  pip_index: "string",
  pip_find_links: "string",
  "features.import_cache": "string",
  "features.downsize_paused_mem": "bool",
  "features.reuse_cgroups": "bool",
  "features.enable_seccomp": "bool",
  "docker.base_image": "string",
  default_network: ["auto", "egress", "host", "none"],
  egress_subnet: "string",
  "sandbox_uids.first": "posint",
  "sandbox_uids.count": "posint",
};

/** 2^32 - 1 means "no uid" to the kernel. */
const LAST_UID = 4_294_967_294;

/** Each worker default and the maximum that bounds it (and every lambda's own value). */
const BOUNDED: readonly (readonly [keyof WorkerConfig["limits"], keyof WorkerConfig["limits"]])[] =
  [
    ["mem_mb", "max_mem_mb"],
    ["node_mem_mb", "max_mem_mb"],
    ["cpu_percent", "max_cpu_percent"],
    ["procs", "max_procs"],
    ["node_procs", "max_procs"],
    ["runtime_sec", "max_runtime_sec"],
    ["disk_mb", "max_disk_mb"],
  ];

/** Checks that need more than one key at a time. */
function checkTogether(config: WorkerConfig): WorkerConfig {
  const { first, count } = config.sandbox_uids;
  if (first + count - 1 > LAST_UID) {
    throw new InvalidWorkerConfigError(
      `config: sandbox_uids.first + sandbox_uids.count - 1 must be at most ${LAST_UID} (got ${first} + ${count})`,
    );
  }
  for (const [key, maxKey] of BOUNDED) {
    const value = config.limits[key];
    const max = config.limits[maxKey];
    if (value > max) {
      throw new InvalidWorkerConfigError(
        `config: limits.${key} is ${value}, over limits.${maxKey} (${max})`,
      );
    }
  }
  return config;
}

function check(key: string, value: unknown, rule: Rule): unknown {
  const bad = (why: string): never => {
    throw new InvalidWorkerConfigError(`config: ${key} ${why} (got ${JSON.stringify(value)})`);
  };
  if (Array.isArray(rule)) {
    if (!rule.includes(value as string)) bad(`must be one of ${rule.join(", ")}`);
    return value;
  }
  switch (rule) {
    case "string":
      if (typeof value !== "string") bad("must be a string");
      return value;
    case "path":
      if (typeof value !== "string" || value === "") bad("must be a non-empty path");
      return value;
    case "bool":
      if (typeof value !== "boolean") bad("must be true or false");
      return value;
    case "port":
      if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 65535)
        bad("must be a port number 0-65535");
      return value;
    case "posint":
      if (!Number.isInteger(value) || (value as number) < 1) bad("must be a positive integer");
      return value;
    case "nonneg":
      if (!Number.isInteger(value) || (value as number) < 0) bad("must be an integer >= 0");
      return value;
  }
  return value;
}

/** Merges a parsed config.json over the defaults, refusing unknown keys and bad values. */
export function parseWorkerConfig(raw: unknown, workerDir: string): WorkerConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new InvalidWorkerConfigError("config: the file must hold a JSON object");
  }
  const config = defaultWorkerConfig(workerDir) as unknown as Record<string, unknown>;
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (typeof v === "object" && v !== null && !Array.isArray(v) && !(key in RULES)) {
        if (!Object.keys(RULES).some((r) => r.startsWith(`${key}.`))) {
          throw new InvalidWorkerConfigError(`config: unknown key ${key}`);
        }
        walk(v as Record<string, unknown>, key);
        continue;
      }
      const rule = RULES[key];
      if (!rule) throw new InvalidWorkerConfigError(`config: unknown key ${key}`);
      setPath(config, key, check(key, v, rule));
    }
  };
  walk(raw as Record<string, unknown>, "");
  const result = config as unknown as WorkerConfig;
  result.worker_dir = resolve(workerDir, result.worker_dir);
  if (!isAbsolute(result.registry)) result.registry = resolve(result.worker_dir, result.registry);
  if (result.pip_find_links !== "" && !isAbsolute(result.pip_find_links))
    result.pip_find_links = resolve(result.worker_dir, result.pip_find_links);
  return checkTogether(result);
}

/** Applies `-o key=value` overrides; values parse as JSON when they can, else as strings. */
export function applyOverrides(config: WorkerConfig, overrides: readonly string[]): WorkerConfig {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const item of overrides) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new InvalidWorkerConfigError(`override "${item}" must look like key=value`);
    const key = item.slice(0, eq);
    const text = item.slice(eq + 1);
    const rule = RULES[key];
    if (!rule) throw new InvalidWorkerConfigError(`config: unknown key ${key} (in -o ${item})`);
    let value: unknown = text;
    if (rule !== "string" && rule !== "path" && !Array.isArray(rule)) {
      try {
        value = JSON.parse(text);
      } catch {
        value = text;
      }
    }
    setPath(copy, key, check(key, value, rule));
  }
  return checkTogether(copy as unknown as WorkerConfig);
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split(".");
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    cur[part] ??= {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1] as string] = value;
}
