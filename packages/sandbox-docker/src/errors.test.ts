import { readFileSync } from "node:fs";
import { BackendError, OlError } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { DOCKER_ERROR_CODES, DockerBaseImageError } from "./errors.js";

const docs = readFileSync(new URL("../../../docs/errors.md", import.meta.url), "utf8");

describe("docker backend errors", () => {
  it.each(DOCKER_ERROR_CODES)("%s has a row in docs/errors.md's table", (code) => {
    expect(docs).toMatch(new RegExp(`^\\|\\s*\`?${code}\`?\\s*\\|`, "m"));
  });

  it("are OL errors with their own code, distinct from BackendError", () => {
    const error = new DockerBaseImageError("no image");
    expect(error).toBeInstanceOf(OlError);
    expect(error.code).toBe("OL_DOCKER_BASE_IMAGE");
    expect(error.status).toBe(503);
    expect(error).not.toBeInstanceOf(BackendError);
  });
});
