import { describe, expect, it } from "vitest";
import { InvalidLambdaConfigError } from "./errors.js";
import { allowedMethods, parseLambdaConfig } from "./lambda-config.js";

describe("ol.yaml", () => {
  it("parses OpenLambda's keys and ours", () => {
    const config = parseLambdaConfig(`
triggers:
  http:
    - method: get
    - method: POST
  cron:
    - schedule: "*/5 * * * *"
environment:
  A: one
  N: 3
reuse-sandbox: false
limits:
  memory: 256
  timeout: 2
network: none
`);
    expect(config.triggers.http).toEqual([{ method: "GET" }, { method: "POST" }]);
    expect(config.triggers.cron).toEqual([{ schedule: "*/5 * * * *" }]);
    expect(config.environment).toEqual({ A: "one", N: "3" });
    expect(config.reuseSandbox).toBe(false);
    expect(config.limits).toEqual({ memMb: 256, runtimeSec: 2 });
    expect(config.network).toBe("none");
    expect(allowedMethods(config)).toEqual(["GET", "POST"]);
  });

  it("takes each network mode; no mode means the worker's default_network", () => {
    for (const mode of ["egress", "host", "none"] as const)
      expect(parseLambdaConfig(`network: ${mode}\n`).network).toBe(mode);
    expect(parseLambdaConfig(undefined).network).toBeUndefined();
  });

  it("defaults to any method, reuse, no env", () => {
    const config = parseLambdaConfig(undefined);
    expect(allowedMethods(config)).toBeUndefined();
    expect(config.reuseSandbox).toBe(true);
    expect(allowedMethods(parseLambdaConfig("triggers:\n  http:\n    - {}\n"))).toBeUndefined();
  });

  it.each([
    ["colour: red", /colour is not a known key/],
    ["triggers:\n  http:\n    - method: FETCH", /triggers.http\[0\].method/],
    ["environment:\n  1X: a", /environment.1X/],
    ["reuse-sandbox: maybe", /reuse-sandbox/],
    ["limits:\n  memory: -5", /limits.memory/],
    ["limits:\n  disk: 5", /limits.disk is not a known limit/],
    ["network: bridge", /network must be egress, host or none/],
    ["a: [", /not valid YAML/],
  ])("refuses %j naming the key", (text, message) => {
    expect(() => parseLambdaConfig(text)).toThrow(InvalidLambdaConfigError);
    expect(() => parseLambdaConfig(text)).toThrow(message);
  });
});
