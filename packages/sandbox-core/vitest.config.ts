import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { name: "sandbox-core:unit", include: ["src/**/*.test.ts", "test/**/*.test.ts"] },
});
