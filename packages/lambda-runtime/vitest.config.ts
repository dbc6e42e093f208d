import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { name: "lambda-runtime:unit", include: ["src/**/*.test.ts"], testTimeout: 20_000 },
});
