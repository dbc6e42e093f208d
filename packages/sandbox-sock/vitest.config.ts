import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { name: "sandbox-sock:unit", include: ["src/**/*.test.ts"], passWithNoTests: true },
});
