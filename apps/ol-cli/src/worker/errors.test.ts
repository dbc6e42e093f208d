import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as errors from "./errors.js";

describe("cli OL_* errors", () => {
  it("documents every code in docs/errors.md", () => {
    const doc = readFileSync(new URL("../../../../docs/errors.md", import.meta.url), "utf8");
    const codes = Object.values(errors).map((c) => c.CODE);
    expect(codes.length).toBeGreaterThan(3);
    expect(codes.filter((code) => !doc.includes(`\`${code}\``))).toEqual([]);
  });
});
