import type { NetworkMode, SandboxCapabilities } from "@openlambda/sandbox-core";
import { InvalidWorkerConfigError } from "./errors.js";
import type { WorkerConfig } from "./worker-config.js";

/**
 * The network of lambdas whose `ol.yaml` does not choose one. `auto`: `egress` (outbound only)
 * where the backend has it, else `host` (the Docker backend), so that a worker always starts;
 * an explicit mode the backend lacks fails at start, naming the key.
 */
export function defaultNetwork(
  config: Pick<WorkerConfig, "default_network" | "sandbox">,
  capabilities: Pick<SandboxCapabilities, "networkModes">,
): NetworkMode {
  const wanted = config.default_network;
  if (wanted === "auto") return capabilities.networkModes.includes("egress") ? "egress" : "host";
  if (!capabilities.networkModes.includes(wanted)) {
    throw new InvalidWorkerConfigError(
      `config: default_network ${wanted} is not supported by the ${config.sandbox} backend (it has ${capabilities.networkModes.join(", ")})`,
    );
  }
  return wanted;
}
