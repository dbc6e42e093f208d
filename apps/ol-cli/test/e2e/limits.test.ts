/**
 * Per-lambda limits through a real worker: an ol.yaml over the worker's maxima is refused at
 * upload (HTTP and `ol admin install`) and when a registry dir is first read, changing
 * nothing; a lambda's files past its disk limit get ENOSPC and it goes on serving.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { describeBackends, lambdaArchive, Worker, writeLambda } from "./harness.js";
import * as L from "./lambdas.js";

/** 1 TB of memory, 1000 cores and a three-year timeout. */
const GREEDY = "limits:\n  memory: 1048576\n  cpu: 100000\n  timeout: 94608000\n";
const REFUSED =
  "limits.memory is 1048576, over the worker's maximum of 1024 (config limits.max_mem_mb)";

/**
 * Writes twice its disk limit into a fresh dir under /tmp and one under /host, says how far
 * each got and why it stopped, and removes what it wrote. Harmless where isolation failed:
 * it writes only into dirs it just made (and at most 32 MiB).
 */
const disky = {
  "f.js": `const fs = require("node:fs");
const path = require("node:path");
exports.f = () => {
  const out = {};
  for (const root of ["/tmp", "/host"]) {
    const dir = fs.mkdtempSync(path.join(root, "ol-fill-"));
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let written = 0, code = null, fd;
    try {
      fd = fs.openSync(path.join(dir, "big"), "w");
      while (written < 16 * chunk.length) written += fs.writeSync(fd, chunk);
    } catch (e) { code = e.code; }
    finally { if (fd !== undefined) fs.closeSync(fd); fs.rmSync(dir, { recursive: true, force: true }); }
    out[root] = { mb: Math.round(written / chunk.length), code };
  }
  return out;
};
`,
  "ol.yaml": "limits:\n  disk: 8\n",
};

await describeBackends("limits", (backend) => {
  let w: Worker;
  beforeAll(async () => {
    w = await Worker.start({
      backend,
      options: ["features.import_cache="],
      lambdas: { greedy: { ...L.echo, "ol.yaml": GREEDY } },
    });
  });
  afterAll(async () => {
    await w?.stop();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
  });

  it("refuses an upload asking for 1 TB, 1000 cores and three years with 400 OL_INVALID_LAMBDA_CONFIG; the previous version still serves", async () => {
    expect((await w.upload("big", lambdaArchive(L.versioned(1)))).status).toBe(201);
    expect((await w.run("big")).json).toMatchObject({ code: 1 });
    const stored = await readFile(join(w.wd.registry, "big.tar.gz"));
    const listed = (await w.fetch("/registry/")).json;

    const res = await w.upload("big", lambdaArchive({ ...L.versioned(2), "ol.yaml": GREEDY }));
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: { code: "OL_INVALID_LAMBDA_CONFIG" } });
    expect((res.json as { error: { message: string } }).error.message).toContain(REFUSED);
    for (const one of ["cpu: 100000", "timeout: 94608000"]) {
      const alone = await w.upload(
        "big",
        lambdaArchive({ ...L.versioned(3), "ol.yaml": `limits:\n  ${one}\n` }),
      );
      expect(alone.status).toBe(400);
      expect(alone.text).toContain(
        `limits.${one.replace(": ", " is ")}, over the worker's maximum`,
      );
    }

    expect((await w.run("big")).json).toMatchObject({ code: 1 });
    expect(await readFile(join(w.wd.registry, "big.tar.gz"))).toEqual(stored);
    expect((await w.fetch("/registry/")).json).toEqual(listed);
  });

  it("ol admin install says why and stores nothing", async () => {
    const src = await mkdtemp(join(tmpdir(), "ol-e2e-greedy-"));
    try {
      await writeLambda(join(src, "hog"), { ...L.echo, "ol.yaml": GREEDY });
      const install = w.wd.ol(["admin", "install", "-p", w.dir, join(src, "hog")]);
      expect(install.status).not.toBe(0);
      expect(install.stderr).toContain("HTTP 400");
      expect(install.stderr).toContain(`OL_INVALID_LAMBDA_CONFIG: ol.yaml: ${REFUSED}`);
      expect((await w.fetch("/registry/")).json).not.toContain("hog");
    } finally {
      await rm(src, { recursive: true, force: true });
    }
  });

  it("refuses a registry dir over a maximum when it is first read", async () => {
    const res = await w.run("greedy", { body: {} });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: { code: "OL_INVALID_LAMBDA_CONFIG" } });
    expect(res.text).toContain(REFUSED);
  });

  it("gives a lambda ENOSPC past its disk limit in /tmp and /host, and it goes on serving", async () => {
    expect((await w.upload("disky", lambdaArchive(disky))).status).toBe(201);
    for (let call = 0; call < 2; call++) {
      const res = await w.run("disky", { body: {} });
      expect(res.status, res.text).toBe(200);
      const out = res.json as Record<string, { mb: number; code: string | null }>;
      for (const root of ["/tmp", "/host"]) {
        expect(out[root]?.code, `${root}: ${res.text}`).toBe("ENOSPC");
        expect(out[root]?.mb).toBeGreaterThanOrEqual(6);
        expect(out[root]?.mb).toBeLessThanOrEqual(8);
      }
    }
  });
});
