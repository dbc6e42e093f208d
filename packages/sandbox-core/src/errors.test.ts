import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as core from "./index.js";
import { errorCodes, OlError } from "./index.js";

const errorClasses = Object.values(core).filter(
  (v): v is typeof core.SandboxDeadError =>
    typeof v === "function" && v.prototype instanceof Error && "CODE" in v,
);

describe("OL_* errors", () => {
  it("declares every exported error class with a unique code in the registry", () => {
    expect(errorClasses.length).toBeGreaterThan(5);
    const codes = errorClasses.map((c) => c.CODE);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(errorCodes().map((e) => e.code)).toContain(code);
  });

  it.each(errorClasses.map((c) => [c.CODE, c] as const))(
    "%s carries code, status, name and cause",
    (code, cls) => {
      const cause = new Error("root cause");
      const err = new cls("something failed", { cause });
      expect(err.code).toBe(code);
      expect(err.message).toBe("something failed");
      expect(err.cause).toBe(cause);
      expect(err.name).toBe(cls.name);
      expect(err.status).toBeGreaterThanOrEqual(400);
      expect(err).toBeInstanceOf(OlError);
      expect(err).toBeInstanceOf(Error);
      expect(core.isOlError(err)).toBe(true);
    },
  );

  it("recognises an error from another copy of the package by brand and code", () => {
    // A second copy would have its own classes; simulate one by rebuilding the branded shape.
    const foreign = Object.create(Error.prototype) as Record<PropertyKey, unknown>;
    Object.defineProperty(foreign, Symbol.for("@openlambda/error"), { value: true });
    foreign.code = "OL_SANDBOX_DEAD";
    expect(foreign).toBeInstanceOf(core.SandboxDeadError);
    expect(foreign).toBeInstanceOf(OlError);
    expect(foreign).not.toBeInstanceOf(core.SandboxOomError);
    expect(new Error("plain")).not.toBeInstanceOf(OlError);
  });

  it("documents every code in docs/errors.md", () => {
    const doc = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");
    const missing = errorCodes().filter((e) => !doc.includes(`\`${e.code}\``));
    expect(missing.map((e) => e.code)).toEqual([]);
  });
});
