import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: { name: "sandbox-sock:unit", include: ["src/**/*.test.ts"] },
      },
      {
        // Real sandboxes: root, cgroups, the built helper. One file at a time on a 2-core box.
        test: {
          name: "sock",
          include: ["test/**/*.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
