import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { name: "event-http:unit", include: ["src/**/*.test.ts"], passWithNoTests: true },
});
