import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { engineSocketPath } from "../src/engine-address.js";
import { DockerEngine } from "../src/engine-client.js";
import { forceCleanup } from "../src/force-cleanup.js";
import { buildTestBase } from "./helpers/base.js";
import { leftovers, ourImageTags, scratchRoots } from "./helpers/leftovers.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Why the docker tests skip; empty when an engine answers. */
    dockerUnavailable: string;
    baseDir: string;
    baseHash: string;
    /** Every backend in the run uses it, so leftovers are found by label. */
    workerId: string;
    /** Our image tags and scratch roots from before the run: not the tests' to judge. */
    imageTagsBefore: string[];
    scratchRootsBefore: string[];
  }
}

/**
 * Once per run: checks for an engine, builds the base root filesystem the default image is
 * imported from, and afterwards fails the run if anything of ours was left behind.
 */
export default async function setup(project: TestProject) {
  const workerId = `ol-test-${process.pid}-${randomBytes(3).toString("hex")}`;
  project.provide("workerId", workerId);
  const reason = await engineProblem();
  if (reason) {
    if (process.env.OL_REQUIRE_DOCKER === "1") {
      throw new Error(`OL_REQUIRE_DOCKER=1 but no Docker engine answers: ${reason}`);
    }
    console.warn(`[docker tests] skipped: no Docker engine answers (${reason})`);
    project.provide("dockerUnavailable", reason);
    project.provide("baseDir", "");
    project.provide("baseHash", "");
    project.provide("imageTagsBefore", []);
    project.provide("scratchRootsBefore", []);
    return;
  }
  const engine = new DockerEngine(engineSocketPath());
  const before = { roots: await scratchRoots(), imageTags: await ourImageTags(engine) };
  await engine.close();
  project.provide("imageTagsBefore", before.imageTags);
  project.provide("scratchRootsBefore", before.roots);
  project.provide("dockerUnavailable", "");
  const baseParent = await mkdtemp(join(tmpdir(), "ol-test-docker-base-"));
  const base = await buildTestBase(join(baseParent, "rootfs"));
  project.provide("baseDir", base.dir);
  project.provide("baseHash", base.hash);

  return async () => {
    await rm(baseParent, { recursive: true, force: true });
    const left = await leftovers(workerId, base.hash, before);
    if (left.length > 0) {
      await forceCleanup({ workerId });
      throw new Error(`docker tests left things behind: ${left.join("; ")}`);
    }
  };
}

async function engineProblem(): Promise<string> {
  let engine: DockerEngine | undefined;
  try {
    engine = new DockerEngine(engineSocketPath());
    await engine.version();
    return "";
  } catch (error) {
    return (error as Error).message;
  } finally {
    await engine?.close();
  }
}
