import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BackendError, isOlError } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { BaseBuildError, SOCK_ERROR_CODES, SockHelperMissingError } from "./errors.js";

const docs = readFileSync(
  fileURLToPath(new URL("../../../docs/errors.md", import.meta.url)),
  "utf8",
);

describe("sandbox-sock errors", () => {
  it.each(SOCK_ERROR_CODES)("documents %s in docs/errors.md", (code) => {
    expect(docs).toMatch(new RegExp(`\\|\\s*\`?${code}\`?\\s*\\|`));
  });

  it("brands its errors as OL errors with their own codes", () => {
    const e = new SockHelperMissingError("missing", { cause: new Error("x") });
    expect(isOlError(e)).toBe(true);
    expect(e.code).toBe("OL_SOCK_HELPER_MISSING");
    expect(e).toBeInstanceOf(SockHelperMissingError);
    expect(e).not.toBeInstanceOf(BaseBuildError);
    expect(e).not.toBeInstanceOf(BackendError);
  });
});
