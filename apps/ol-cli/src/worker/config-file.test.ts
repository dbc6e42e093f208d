import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { effectiveConfig, writeDefaultConfig } from "./config-file.js";
import { type WorkerLayout, workerLayout } from "./layout.js";

describe("effectiveConfig", () => {
  let layout: WorkerLayout;
  beforeEach(async () => {
    layout = workerLayout(await mkdtemp(join(tmpdir(), "ol-cli-config-")));
    await writeDefaultConfig(layout);
  });
  afterEach(async () => {
    await rm(layout.dir, { recursive: true, force: true });
  });

  it("is config.json when no worker record says otherwise", async () => {
    expect((await effectiveConfig(layout, undefined)).sandbox).toBe("sock");
  });

  it("applies the -o overrides the worker recorded in its pid file", async () => {
    const record = {
      pid: 1,
      url: "http://127.0.0.1:1",
      startedAt: "",
      options: ["sandbox=docker", "worker_port=0"],
    };
    const config = await effectiveConfig(layout, record);
    expect(config.sandbox).toBe("docker");
    expect(config.worker_port).toBe(0);
  });
});
