import { describe, expect, it } from "vitest";
import { InvalidSpecError } from "./errors.js";
import { validateSpec } from "./spec.js";
import type { SandboxCapabilities, SandboxSpec } from "./types.js";

const good: SandboxSpec = {
  codeDir: "/srv/code",
  runtime: "node",
  command: ["node", "/handler/f.js"],
  limits: { memoryMb: 64, cpuPercent: 50, procs: 10, timeoutMs: 1000 },
};

describe("validateSpec", () => {
  it("accepts a good spec", () => {
    expect(() => validateSpec(good)).not.toThrow();
    expect(() => validateSpec({ ...good, limits: { ...good.limits, diskMb: 1 } })).not.toThrow();
  });

  it.each([
    ["codeDir", { codeDir: "code" }],
    ["scratchDir", { scratchDir: "./s" }],
    ["runtime", { runtime: "ruby" }],
    ["command", { command: [] }],
    ["command\\[1\\]", { command: ["a", "b\0"] }],
    ["limits.memoryMb", { limits: { ...good.limits, memoryMb: 0 } }],
    ["limits.procs", { limits: { ...good.limits, procs: 1.5 } }],
    ["limits.diskMb", { limits: { ...good.limits, diskMb: 0 } }],
    ["limits.diskMb", { limits: { ...good.limits, diskMb: 2.5 } }],
    ["env.1BAD", { env: { "1BAD": "x" } }],
    ["network", { network: "bridge" }],
    ["packages.\\.\\.", { packages: { "..": "/p" } }],
    ["role", { role: "root" }],
    ["cpuGroup\\.name", { cpuGroup: { name: "a/b", cpuPercent: 100 } }],
    ["cpuGroup\\.name", { cpuGroup: { name: "..", cpuPercent: 100 } }],
    ["cpuGroup\\.name", { cpuGroup: { name: "x".repeat(129), cpuPercent: 100 } }],
    ["cpuGroup\\.cpuPercent", { cpuGroup: { name: "f", cpuPercent: 0 } }],
    ["cpuGroup\\.cpuPercent", { cpuGroup: { name: "f", cpuPercent: 12.5 } }],
    ["cpuGroup", { cpuGroup: null }],
  ])("names %s when it is wrong", (field, patch) => {
    const spec = { ...good, ...patch } as unknown as SandboxSpec;
    expect(() => validateSpec(spec)).toThrow(InvalidSpecError);
    expect(() => validateSpec(spec)).toThrow(new RegExp(`invalid sandbox spec: ${field} `));
  });

  it("accepts a CPU group on a backend that enforces one, refuses it on one that does not", () => {
    const spec = { ...good, cpuGroup: { name: "my_lambda-1.2", cpuPercent: 250 } };
    expect(() => validateSpec(spec)).not.toThrow();
    const caps = (cpuGroups?: boolean) =>
      ({ networkModes: ["host"], limits: { cpuGroups } }) as unknown as SandboxCapabilities;
    expect(() => validateSpec(spec, caps(true))).not.toThrow();
    expect(() => validateSpec(spec, caps(false))).toThrow(
      /cpuGroup is not enforced by this backend/,
    );
    expect(() => validateSpec(spec, caps(undefined))).toThrow(InvalidSpecError);
    expect(() => validateSpec(good, caps(false))).not.toThrow();
  });

  it("refuses a network mode the backend lacks", () => {
    const caps = { networkModes: ["host"] } as unknown as SandboxCapabilities;
    expect(() => validateSpec({ ...good, network: "none" }, caps)).toThrow(
      /network none is not supported/,
    );
  });
});
