import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SandboxSpec } from "@openlambda/sandbox-core";
import { CONFORMANCE_GUEST_SOURCE } from "@openlambda/sandbox-core/conformance";
import { afterAll, describe, expect, inject } from "vitest";
import { type DockerBackendOptions, dockerBackend } from "../../src/docker-backend.js";
import { leftovers } from "./leftovers.js";

/**
 * `describe`, or `describe.skip` saying why when no engine answers. Every docker suite ends by
 * asserting that it left no container, image tag or scratch dir behind.
 */
export function describeDocker(title: string, body: () => void): void {
  const reason = inject("dockerUnavailable");
  if (reason) {
    describe.skip(`${title} [skipped: no Docker engine answers: ${reason}]`, body);
    return;
  }
  describe(title, () => {
    // Registered first: after-hooks run in reverse order, so this one runs last.
    afterAll(async () => {
      expect(await currentLeftovers()).toEqual([]);
    });
    body();
  });
}

export function currentLeftovers(): Promise<string[]> {
  return leftovers(inject("workerId"), inject("baseHash"), {
    roots: inject("scratchRootsBefore"),
    imageTags: inject("imageTagsBefore"),
  });
}

/** A backend on the run's base image and worker identity. */
export function testBackend(overrides: DockerBackendOptions = {}) {
  return dockerBackend({
    baseDir: inject("baseDir"),
    baseHash: inject("baseHash"),
    workerId: inject("workerId"),
    ...overrides,
  });
}

/** A code dir with the conformance guest (`guest.mjs`) and extra files; removed by `dispose`. */
export async function codeDir(files: Record<string, string> = {}) {
  const dir = await mkdtemp(join(tmpdir(), "ol-test-docker-code-"));
  await writeFile(join(dir, "guest.mjs"), CONFORMANCE_GUEST_SOURCE);
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

export function spec(codeDir: string, overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return {
    codeDir,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    limits: { memoryMb: 128, cpuPercent: 50, procs: 32, timeoutMs: 10_000 },
    ...overrides,
  };
}
