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
  ])("names %s when it is wrong", (field, patch) => {
    const spec = { ...good, ...patch } as unknown as SandboxSpec;
    expect(() => validateSpec(spec)).toThrow(InvalidSpecError);
    expect(() => validateSpec(spec)).toThrow(new RegExp(`invalid sandbox spec: ${field} `));
  });

  it("refuses a network mode the backend lacks", () => {
    const caps = { networkModes: ["host"] } as unknown as SandboxCapabilities;
    expect(() => validateSpec({ ...good, network: "none" }, caps)).toThrow(
      /network none is not supported/,
    );
  });
});
