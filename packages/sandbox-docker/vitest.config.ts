import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { name: "sandbox-docker:unit", include: ["src/**/*.test.ts"], passWithNoTests: true },
});
