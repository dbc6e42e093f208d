import { isAbsolute } from "node:path";
import { InvalidSpecError } from "./errors.js";
import type { CpuGroup, SandboxCapabilities, SandboxLimits, SandboxSpec } from "./types.js";

export const DEFAULT_LIMITS: SandboxLimits = {
  memoryMb: 128,
  cpuPercent: 100,
  procs: 32,
  timeoutMs: 30_000,
};

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PACKAGE_NAME = /^(@[a-z0-9._~-]+\/)?[a-z0-9._~-]+$/i;
/** The lambda-name rule: a group's name becomes a cgroup directory name. */
const GROUP_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** Checks a CPU group (of a spec, or one a sandbox joins); throws `InvalidSpecError`. */
export function validateCpuGroup(group: CpuGroup, capabilities?: SandboxCapabilities): void {
  const fail = (field: string, why: string): never => {
    throw new InvalidSpecError(`invalid sandbox spec: cpuGroup${field} ${why}`);
  };
  if (typeof group !== "object" || group === null) fail("", "must be an object");
  const { name, cpuPercent } = group;
  if (typeof name !== "string" || !GROUP_NAME.test(name) || name === "." || name === "..")
    fail(".name", `must be 1-128 of A-Z a-z 0-9 . _ - (not . or ..) (got ${JSON.stringify(name)})`);
  if (!Number.isInteger(cpuPercent) || cpuPercent < 1)
    fail(".cpuPercent", `must be an integer >= 1 (got ${String(cpuPercent)})`);
  if (capabilities && capabilities.limits.cpuGroups !== true)
    fail("", "is not enforced by this backend");
}

/**
 * Checks a spec before a backend acts on it; throws `InvalidSpecError` naming the field.
 * Backends call it first so that a bad spec changes nothing on the host.
 */
export function validateSpec(spec: SandboxSpec, capabilities?: SandboxCapabilities): void {
  const fail = (field: string, why: string): never => {
    throw new InvalidSpecError(`invalid sandbox spec: ${field} ${why}`);
  };
  if (typeof spec !== "object" || spec === null) fail("spec", "must be an object");
  if (typeof spec.codeDir !== "string" || !isAbsolute(spec.codeDir))
    fail("codeDir", "must be an absolute path");
  if (
    spec.scratchDir !== undefined &&
    (typeof spec.scratchDir !== "string" || !isAbsolute(spec.scratchDir))
  )
    fail("scratchDir", "must be an absolute path");
  if (!["node", "python", "custom"].includes(spec.runtime))
    fail("runtime", `must be node, python or custom (got ${JSON.stringify(spec.runtime)})`);
  if (!Array.isArray(spec.command) || spec.command.length === 0)
    fail("command", "must be a non-empty array of strings");
  for (const [i, arg] of spec.command.entries()) {
    if (typeof arg !== "string" || arg.includes("\0"))
      fail(`command[${i}]`, "must be a string without NUL");
  }
  const limits = spec.limits;
  if (typeof limits !== "object" || limits === null) fail("limits", "must be an object");
  const positiveInt = (name: keyof SandboxLimits, min: number) => {
    const v = limits[name];
    if (v === undefined || !Number.isInteger(v) || v < min)
      fail(`limits.${name}`, `must be an integer >= ${min} (got ${String(v)})`);
  };
  positiveInt("memoryMb", 4);
  positiveInt("cpuPercent", 1);
  positiveInt("procs", 1);
  positiveInt("timeoutMs", 1);
  if (limits.diskMb !== undefined) positiveInt("diskMb", 1);
  for (const [k, v] of Object.entries(spec.env ?? {})) {
    if (!ENV_NAME.test(k)) fail(`env.${k}`, "is not a valid environment variable name");
    if (typeof v !== "string" || v.includes("\0")) fail(`env.${k}`, "must be a string without NUL");
  }
  if (spec.network !== undefined && !["egress", "host", "none"].includes(spec.network))
    fail("network", `must be egress, host or none (got ${JSON.stringify(spec.network)})`);
  if (spec.network && capabilities && !capabilities.networkModes.includes(spec.network))
    fail("network", `${spec.network} is not supported by this backend`);
  for (const [name, dir] of Object.entries(spec.packages ?? {})) {
    if (!PACKAGE_NAME.test(name) || name.includes(".."))
      fail(`packages.${name}`, "is not a valid package name");
    if (typeof dir !== "string" || !isAbsolute(dir))
      fail(`packages.${name}`, "must be an absolute path");
  }
  if (spec.role !== undefined && spec.role !== "leaf" && spec.role !== "zygote")
    fail("role", "must be leaf or zygote");
  if (spec.cpuGroup !== undefined) validateCpuGroup(spec.cpuGroup, capabilities);
}
