import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // A stuck e2e worker is stopped (SIGKILL and force-cleanup) before the run ends.
    teardownTimeout: 60_000,
    projects: [
      { test: { name: "cli:unit", include: ["src/**/*.test.ts"] } },
      {
        // A real `ol worker up` per suite, over real HTTP, with real sandboxes (sock always,
        // docker when an engine answers; OL_REQUIRE_DOCKER=1 makes a missing engine fail).
        // One file at a time: the workers and their sandboxes share a small machine.
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});
