import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackendError } from "@openlambda/sandbox-core";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { dockerBackend } from "../src/docker-backend.js";
import { DockerBaseImageError } from "../src/errors.js";
import { codeDir, describeDocker, spec } from "./helpers/context.js";

describeDocker("engine errors become typed errors", () => {
  let code: Awaited<ReturnType<typeof codeDir>>;
  beforeAll(async () => {
    code = await codeDir();
  });
  afterAll(() => code.dispose());

  it("an image the engine lacks is a BackendError with the engine's text; nothing is pulled", async () => {
    const backend = dockerBackend({
      image: "openlambda-no-such-image:missing",
      workerId: inject("workerId"),
    });
    try {
      const error = await backend.ready().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BackendError);
      expect((error as Error).message).toMatch(/No such image: openlambda-no-such-image:missing/i);
      expect((error as Error).message).toMatch(/nothing is pulled/);
      await expect(backend.create(spec(code.dir))).rejects.toBeInstanceOf(BackendError);
    } finally {
      await backend.cleanup();
    }
  });

  it("no image and no base directory is a DockerBaseImageError saying what to give", async () => {
    const backend = dockerBackend({ workerId: inject("workerId") });
    try {
      await expect(backend.ready()).rejects.toBeInstanceOf(DockerBaseImageError);
      await expect(backend.ready()).rejects.toThrow(/docker\.base_image.*baseDir/);
    } finally {
      await backend.cleanup();
    }
  });

  it("a base directory that cannot be read is a DockerBaseImageError, and leaves no tag", async () => {
    const backend = dockerBackend({
      baseDir: "/nonexistent/ol-base",
      baseHash: "openlambda-test-unreadable-base",
      workerId: inject("workerId"),
    });
    try {
      const error = await backend.ready().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DockerBaseImageError);
      expect((error as Error).message).toMatch(/tar of \/nonexistent\/ol-base failed/);
    } finally {
      await backend.cleanup();
    }
  });

  it("a guest that exits before listening is a SandboxGuestStartError quoting its output", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ol-test-docker-code-"));
    await writeFile(
      join(dir, "bad.mjs"),
      'console.error("guest cannot start: missing config"); process.exit(7);\n',
    );
    const backend = dockerBackend({
      baseDir: inject("baseDir"),
      baseHash: inject("baseHash"),
      workerId: inject("workerId"),
    });
    try {
      const error = await backend
        .create(spec(dir, { command: ["node", "/handler/bad.mjs"] }))
        .catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe("OL_SANDBOX_GUEST_START");
      expect((error as Error).message).toMatch(/exited with code 7/);
      expect((error as Error).message).toMatch(/guest cannot start: missing config/);
    } finally {
      await backend.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
