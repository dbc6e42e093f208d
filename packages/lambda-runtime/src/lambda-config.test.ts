import { describe, expect, it } from "vitest";
import { InvalidLambdaConfigError } from "./errors.js";
import { allowedMethods, type LimitMaxima, parseLambdaConfig } from "./lambda-config.js";

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
    ["limits:\n  swap: 5", /limits.swap is not a known limit/],
    ["network: bridge", /network must be egress, host or none/],
    ["a: [", /not valid YAML/],
  ])("refuses %j naming the key", (text, message) => {
    expect(() => parseLambdaConfig(text)).toThrow(InvalidLambdaConfigError);
    expect(() => parseLambdaConfig(text)).toThrow(message);
  });

  describe("limits bounded by the worker's maxima", () => {
    const maxima: LimitMaxima = {
      memMb: { max: 1024, key: "limits.max_mem_mb" },
      cpuPercent: { max: 400, key: "limits.max_cpu_percent" },
      procs: { max: 256, key: "limits.max_procs" },
      runtimeSec: { max: 900, key: "limits.max_runtime_sec" },
      diskMb: { max: 512, key: "limits.max_disk_mb" },
      lambdaCpuPercent: { max: 100, key: "limits.lambda_cpu_percent" },
    };
    it.each([
      ["memory", "memMb", 1024, "limits.max_mem_mb"],
      ["mem_mb", "memMb", 1024, "limits.max_mem_mb"],
      ["cpu", "cpuPercent", 400, "limits.max_cpu_percent"],
      ["cpu_percent", "cpuPercent", 400, "limits.max_cpu_percent"],
      ["procs", "procs", 256, "limits.max_procs"],
      ["timeout", "runtimeSec", 900, "limits.max_runtime_sec"],
      ["runtime_sec", "runtimeSec", 900, "limits.max_runtime_sec"],
      ["disk", "diskMb", 512, "limits.max_disk_mb"],
      ["disk_mb", "diskMb", 512, "limits.max_disk_mb"],
      ["lambda_cpu_percent", "lambdaCpuPercent", 100, "limits.lambda_cpu_percent"],
    ])(
      "takes %s at its maximum and refuses one more, naming the key, value and maximum",
      (key, field, max, maxKey) => {
        expect(parseLambdaConfig(`limits:\n  ${key}: ${max}\n`, maxima).limits).toEqual({
          [field]: max,
        });
        const over = `limits:\n  ${key}: ${max + 1}\n`;
        expect(() => parseLambdaConfig(over, maxima)).toThrow(InvalidLambdaConfigError);
        expect(() => parseLambdaConfig(over, maxima)).toThrow(
          `ol.yaml: limits.${key} is ${max + 1}, over the worker's maximum of ${max} (config ${maxKey})`,
        );
        // Without maxima (a registry a library user made without them) nothing is bounded.
        expect(parseLambdaConfig(over).limits).toEqual({ [field]: max + 1 });
      },
    );

    it("refuses 1 TB of memory, 1000 cores and a three-year timeout", () => {
      const text = "limits:\n  memory: 1048576\n  cpu: 100000\n  timeout: 94608000\n";
      expect(() => parseLambdaConfig(text, maxima)).toThrow(/limits\.memory is 1048576/);
      expect(() => parseLambdaConfig("limits:\n  cpu: 100000\n", maxima)).toThrow(
        /limits\.cpu is 100000, over the worker's maximum of 400/,
      );
      expect(() => parseLambdaConfig("limits:\n  timeout: 94608000\n", maxima)).toThrow(
        /limits\.timeout is 94608000, over the worker's maximum of 900/,
      );
    });
  });
});
