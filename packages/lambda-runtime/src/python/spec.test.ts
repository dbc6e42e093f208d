import { describe, expect, it } from "vitest";
import { DEFAULT_LAMBDA_CONFIG, parseLambdaConfig } from "../lambda-config.js";
import type { LambdaCode } from "../registry/directory-registry.js";
import { defaultWorkerConfig, parseWorkerConfig } from "../worker-config.js";
import { PYTHON_COMMAND, pythonSpec } from "./spec.js";

const code = (config = DEFAULT_LAMBDA_CONFIG): LambdaCode => ({
  name: "py",
  version: "v1",
  dir: "/srv/code/py",
  config,
});

describe("pythonSpec", () => {
  it("uses the worker's Python limits, the guest command, env and the lambda's packages", () => {
    const spec = pythonSpec(
      code(),
      defaultWorkerConfig("/w"),
      "/rt",
      {
        requirements: [],
        packages: { "requests-2.31.0": "/w/pip/requests-2.31.0" },
        ms: 1,
      },
      "egress",
    );
    expect(spec.runtime).toBe("python");
    // The worker's default network, when ol.yaml names none.
    expect(spec.network).toBe("egress");
    expect(spec.command).toEqual([...PYTHON_COMMAND]);
    // OpenLambda's 50 MiB plus the default 32 MiB disk, which is tmpfs charged to the sandbox.
    expect(spec.limits).toEqual({
      memoryMb: 50 + 32,
      cpuPercent: 100,
      procs: 10,
      timeoutMs: 30_000,
      diskMb: 32,
    });
    expect(spec.packages).toEqual({
      "ol-runtime": "/rt",
      "requests-2.31.0": "/w/pip/requests-2.31.0",
    });
    expect(spec.env).toMatchObject({
      OL_LAMBDA_NAME: "py",
      OL_PACKAGES: "/packages/requests-2.31.0",
    });
  });

  it("lets ol.yaml override limits and add env (OL_* entry variables included)", () => {
    const config = parseLambdaConfig(
      "environment:\n  OL_ENTRY_FILE: web.py\n  A: b\nlimits:\n  memory: 80\n  procs: 4\n  timeout: 2\n  disk: 8\n",
    );
    const spec = pythonSpec(code(config), defaultWorkerConfig("/w"), "/rt", undefined, "egress");
    expect(spec.limits).toMatchObject({ memoryMb: 88, procs: 4, timeoutMs: 2000, diskMb: 8 });
    expect(spec.env).toMatchObject({ OL_ENTRY_FILE: "web.py", A: "b", OL_PACKAGES: "" });
  });
});

describe("pip config keys", () => {
  it("default to pip's index and no find-links; a relative find-links dir is under worker_dir", () => {
    expect(defaultWorkerConfig("/w")).toMatchObject({ pip_index: "", pip_find_links: "" });
    const c = parseWorkerConfig({ pip_index: "none", pip_find_links: "wheels" }, "/w");
    expect([c.pip_index, c.pip_find_links]).toEqual(["none", "/w/wheels"]);
    expect(() => parseWorkerConfig({ pip_index: 3 }, "/w")).toThrow(/pip_index must be a string/);
  });
});
