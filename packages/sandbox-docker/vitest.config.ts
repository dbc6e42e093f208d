import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Removing containers and the base dir after the run takes a few seconds.
    teardownTimeout: 120_000,
    projects: [
      {
        test: { name: "sandbox-docker:unit", include: ["src/**/*.test.ts"] },
      },
      {
        // Against a real engine: skipped with a message when none answers, unless
        // OL_REQUIRE_DOCKER=1 (CI) turns a missing engine into a failure.
        test: {
          name: "docker",
          include: ["test/**/*.test.ts"],
          globalSetup: ["test/global-setup.ts"],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
