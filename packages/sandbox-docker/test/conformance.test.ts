import { runSandboxConformance } from "@openlambda/sandbox-core/conformance";
import { describeDocker, testBackend } from "./helpers/context.js";

describeDocker("docker backend on a real engine", () => {
  runSandboxConformance({
    name: "docker",
    backend: () => testBackend(),
    timeoutMs: 60_000,
    skip: {
      fork: "a Docker container cannot be forked from another (no zygotes on Docker; documented in docs/docker.md)",
    },
  });
});
