import { readFileSync } from "node:fs";
import { errorCodes, OlError } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import * as errors from "./errors.js";

describe("lambda-runtime OL_* errors", () => {
  const classes = Object.values(errors);

  it("gives every class a unique registered code and an HTTP status", () => {
    const codes = classes.map((c) => c.CODE);
    expect(new Set(codes).size).toBe(codes.length);
    for (const cls of classes) {
      const err = new cls("x");
      expect(err).toBeInstanceOf(OlError);
      expect(err.status).toBeGreaterThanOrEqual(400);
      expect(errorCodes().map((e) => e.code)).toContain(cls.CODE);
    }
  });

  it("documents every code in docs/errors.md", () => {
    const doc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");
    expect(classes.map((c) => c.CODE).filter((code) => !doc.includes(`\`${code}\``))).toEqual([]);
  });
});
