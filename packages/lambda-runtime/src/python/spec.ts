import type { NetworkMode, SandboxSpec } from "@openlambda/sandbox-core";
import type { LambdaCode } from "../registry/directory-registry.js";
import { lambdaLimits } from "../sandbox-limits.js";
import type { WorkerConfig } from "../worker-config.js";
import type { InstalledPython } from "./pip-installer.js";

/** Where the guest runtimes are visible inside a sandbox. */
export const PYTHON_RUNTIME_PACKAGE = "ol-runtime";
export const PYTHON_GUEST = `/packages/${PYTHON_RUNTIME_PACKAGE}/ol_guest.py`;

/**
 * `-S`: no site-packages or dist-packages on sys.path (the guest adds the lambda's packages);
 * `-u`: the lambda's prints reach the sandbox log at once.
 */
export const PYTHON_COMMAND = ["python3", "-S", "-u", PYTHON_GUEST] as const;

/** The sandbox spec of a Python lambda version: OpenLambda's limits unless ol.yaml overrides. */
export function pythonSpec(
  code: LambdaCode,
  config: WorkerConfig,
  runtimeDir: string,
  installed: InstalledPython | undefined,
  network: NetworkMode,
): SandboxSpec {
  const packages = installed?.packages ?? {};
  return {
    codeDir: code.dir,
    runtime: "python",
    command: [...PYTHON_COMMAND],
    limits: lambdaLimits(config, "python", code.config.limits),
    env: {
      ...code.config.environment,
      PYTHONDONTWRITEBYTECODE: "1",
      OL_LAMBDA_NAME: code.name,
      OL_PACKAGES: Object.keys(packages)
        .map((p) => `/packages/${p}`)
        .join(":"),
    },
    network: code.config.network ?? network,
    packages: { [PYTHON_RUNTIME_PACKAGE]: runtimeDir, ...packages },
    labels: { lambda: code.name, version: code.version },
  };
}
