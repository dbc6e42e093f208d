import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { engineSocketPath } from "../src/engine-address.js";
import { DockerEngine } from "../src/engine-client.js";
import { forceCleanup } from "../src/force-cleanup.js";
import { LABEL_WORKER, labelFilter } from "../src/labels.js";
import { codeDir, describeDocker } from "./helpers/context.js";

const dist = fileURLToPath(new URL("../dist/index.js", import.meta.url));

/** A worker in miniature: makes two sandboxes, says where, then waits to be killed. */
const CHILD = `
const { dockerBackend } = await import(process.env.OL_DIST);
const backend = dockerBackend({ image: process.env.OL_IMAGE, workerId: process.env.OL_WORKER });
const spec = {
  codeDir: process.env.OL_CODE,
  runtime: "node",
  command: ["node", "/handler/guest.mjs"],
  limits: { memoryMb: 64, cpuPercent: 50, procs: 32, timeoutMs: 1000 },
};
const sandboxes = await Promise.all([backend.create(spec), backend.create(spec)]);
console.log(JSON.stringify(sandboxes.map((s) => s.id)));
setInterval(() => {}, 1000);
`;

describeDocker("forceCleanup after a worker was killed with SIGKILL", () => {
  let engine: DockerEngine;
  let code: Awaited<ReturnType<typeof codeDir>>;
  beforeAll(async () => {
    engine = new DockerEngine(engineSocketPath());
    code = await codeDir();
  });
  afterAll(async () => {
    await engine.close();
    await code.dispose();
  });

  const containersOf = async (workerId: string) =>
    (
      await engine.json<{ Id: string; Labels: Record<string, string> }[]>({
        method: "GET",
        path: "/containers/json",
        query: { all: true, filters: labelFilter({ [LABEL_WORKER]: workerId }) },
        what: "list",
      })
    ).body;

  it("removes the dead worker's containers and scratch dirs, and only those", async () => {
    expect(existsSync(dist), `build the package first (${dist})`).toBe(true);
    const workerId = `${inject("workerId")}-killed`;
    const { image } = await (await import("./helpers/context.js")).testBackend().ready();
    const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD], {
      env: {
        ...process.env,
        OL_DIST: dist,
        OL_IMAGE: image,
        OL_WORKER: workerId,
        OL_CODE: code.dir,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const ids = await new Promise<string[]>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes("\n")) resolve(JSON.parse(out) as string[]);
      });
      child.once("exit", (c) => reject(new Error(`child exited early with ${c}`)));
    });
    expect(ids).toHaveLength(2);
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));

    const left = await containersOf(workerId);
    expect(left).toHaveLength(2);
    const scratchDirs = left.map((c) => c.Labels["org.openlambda.owned-scratch"] ?? "");
    for (const dir of scratchDirs) expect((await stat(dir)).isDirectory()).toBe(true);

    // Another worker's containers are not touched by a cleanup naming this one.
    const result = await forceCleanup({ workerId });
    expect(result).toEqual({ containers: 2, scratchDirs: 2 });
    expect(await containersOf(workerId)).toEqual([]);
    for (const dir of scratchDirs) {
      expect(existsSync(dir)).toBe(false);
      // The scratch root the dead worker made is gone too (it is empty now).
      expect(existsSync(dirname(dir))).toBe(false);
    }
  });
});
