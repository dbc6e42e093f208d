import { readFileSync } from "node:fs";
import { errorCodes, OlError } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import * as pkg from "./index.js";

const errorClasses = Object.values(pkg).filter(
  (v): v is typeof pkg.InternalError =>
    typeof v === "function" && v.prototype instanceof Error && "CODE" in v,
);

describe("event-http OL_* errors", () => {
  it("exports its error classes, each with a unique code in the shared registry", () => {
    expect(errorClasses.map((c) => c.CODE).sort()).toEqual([
      "OL_BODY_TOO_LARGE",
      "OL_INTERNAL",
      "OL_LISTEN_FAILED",
      "OL_ROUTE_METHOD_NOT_ALLOWED",
      "OL_ROUTE_NOT_FOUND",
      "OL_ROUTE_UNAVAILABLE",
      "OL_TRIGGER_STATE",
      "OL_UNAUTHORIZED",
    ]);
    const registered = errorCodes().map((e) => e.code);
    for (const cls of errorClasses) expect(registered).toContain(cls.CODE);
  });

  it.each(errorClasses.map((c) => [c.CODE, c] as const))(
    "%s carries code, status and cause",
    (code, cls) => {
      const cause = new Error("root");
      const err = new cls("failed", { cause });
      expect(err.code).toBe(code);
      expect(err.cause).toBe(cause);
      expect(err.status).toBeGreaterThanOrEqual(400);
      expect(err).toBeInstanceOf(OlError);
    },
  );

  it("documents every code in docs/errors.md with its status and package", () => {
    const doc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");
    const missing = errorClasses
      .map((cls) => ({ code: cls.CODE, status: new cls("x").status }))
      .filter(({ code, status }) => !doc.includes(`| \`${code}\` | ${status} | event-http |`));
    expect(missing).toEqual([]);
  });
});
