import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSandboxConformance } from "@openlambda/sandbox-core/conformance";
import { describe, it } from "vitest";
import { sockBackend } from "../src/sock-backend.js";
import { testBase, whatIsMissing } from "./support.js";

const missing = whatIsMissing();

if (missing) {
  describe.skip(`sandbox conformance: sock [${missing}]`, () => {
    it("needs root and cgroups", () => {});
  });
} else {
  runSandboxConformance({
    name: "sock",
    backend: async () =>
      sockBackend({
        // A fixed work dir: cleanup() empties it, so runs do not pile up temp dirs.
        workDir: join(tmpdir(), "ol-sock-conformance-work"),
        baseDir: await testBase(),
        cgroupPoolSize: 4,
      }),
    timeoutMs: 30_000,
  });
}
