import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_MANIFEST } from "@openlambda/sandbox-sock";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { baseHashOption } from "./backend.js";
import { type WorkerLayout, workerLayout } from "./layout.js";

describe("baseHashOption", () => {
  let layout: WorkerLayout;
  beforeEach(async () => {
    layout = workerLayout(await mkdtemp(join(tmpdir(), "ol-cli-backend-")));
  });
  afterEach(async () => {
    await rm(layout.dir, { recursive: true, force: true });
  });

  it("passes the base builder's hash on, so worker dirs share one Docker image", async () => {
    await mkdir(layout.base, { recursive: true });
    await writeFile(join(layout.base, BASE_MANIFEST), JSON.stringify({ hash: "abc123" }));
    expect(baseHashOption(layout)).toEqual({ baseHash: "abc123" });
  });

  it("passes nothing when the base has no manifest", () => {
    expect(baseHashOption(layout)).toEqual({});
  });
});
