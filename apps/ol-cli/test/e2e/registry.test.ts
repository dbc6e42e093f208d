/**
 * The registry through a real worker: code updates (uploaded, or written into the registry
 * directory) are seen within registry_cache_ms + 1 s and never half-installed; bad archives
 * and calls without the admin token change nothing.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createGzip, gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import {
  describeBackends,
  type LambdaFiles,
  lambdaArchive,
  type RunResult,
  tarBytes,
  tarGz,
  Worker,
} from "./harness.js";
import * as L from "./lambdas.js";

const CACHE_MS = 1000;

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly at: number;
}

/** Calls `name` from `lanes` loops until `stop()`; every answer, with when it arrived. */
async function hammer(w: Worker, name: string, stop: () => boolean, lanes = 3): Promise<Answer[]> {
  const answers: Answer[] = [];
  const deadline = Date.now() + 20_000;
  const lane = async () => {
    while (!stop() && Date.now() < deadline) {
      let res: RunResult;
      try {
        res = await w.run(name);
      } catch (error) {
        answers.push({ status: 0, body: String(error), at: Date.now() });
        continue;
      }
      answers.push({ status: res.status, body: res.json ?? res.text, at: Date.now() });
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return answers;
}

/** Hammers while `update` runs; resolves with the answers and how long `want` took to appear. */
async function updateUnderLoad(
  w: Worker,
  name: string,
  update: () => Promise<void>,
  want: number,
): Promise<{ answers: Answer[]; visibleAfterMs: number }> {
  let updatedAt = 0;
  let seenAt = 0;
  let stopAt = Number.POSITIVE_INFINITY;
  const answers: Answer[] = [];
  const load = hammer(w, name, () => Date.now() > stopAt).then((a) => answers.push(...a));
  await sleep(300);
  await update();
  updatedAt = Date.now();
  const deadline = updatedAt + CACHE_MS + 5000;
  while (Date.now() < deadline) {
    const res = await w.run(name);
    if ((res.json as { code?: number } | undefined)?.code === want) {
      seenAt = Date.now();
      break;
    }
    await sleep(20);
  }
  stopAt = Date.now() + 300;
  await load;
  expect(seenAt, `version ${want} never appeared`).toBeGreaterThan(0);
  return { answers, visibleAfterMs: seenAt - updatedAt };
}

function expectWhole(answers: readonly Answer[], versions: readonly number[]): void {
  expect(answers.length).toBeGreaterThan(10);
  for (const a of answers) {
    expect(a.status, JSON.stringify(a)).toBe(200);
    const body = a.body as { code: number; data: number };
    expect(versions).toContain(body.code);
    expect(body.data, `half-installed: ${JSON.stringify(body)}`).toBe(body.code);
  }
}

await describeBackends("the registry", (backend) => {
  let w: Worker;
  beforeAll(async () => {
    w = await Worker.start({
      backend,
      options: [`registry_cache_ms=${CACHE_MS}`],
      lambdas: { echo: L.echo },
    });
  });
  afterAll(async () => {
    await w?.stop();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
  });

  it("an uploaded lambda is served; an upload of a new version is seen at once, never half-installed", async () => {
    const up = await w.upload("ver", lambdaArchive(L.versioned(1)));
    expect(up.status, up.text).toBe(201);
    expect(up.json).toMatchObject({ name: "ver", version: expect.any(String) });
    expect((await w.run("ver")).json).toEqual({ code: 1, data: 1 });
    const { answers, visibleAfterMs } = await updateUnderLoad(
      w,
      "ver",
      async () => {
        const res = await w.upload("ver", lambdaArchive(L.versioned(2)));
        expect(res.status, res.text).toBe(201);
      },
      2,
    );
    expectWhole(answers, [1, 2]);
    expect(visibleAfterMs).toBeLessThanOrEqual(CACHE_MS + 1000);
    expect(answers.at(-1)?.body).toEqual({ code: 2, data: 2 });
  });

  it("a new archive written into the registry directory is seen within registry_cache_ms + 1 s", async () => {
    const { answers, visibleAfterMs } = await updateUnderLoad(
      w,
      "ver",
      async () => {
        const tmp = join(w.wd.registry, ".ver.tar.gz.tmp");
        await writeFile(tmp, lambdaArchive(L.versioned(3)));
        await rename(tmp, join(w.wd.registry, "ver.tar.gz"));
      },
      3,
    );
    expectWhole(answers, [2, 3]);
    expect(visibleAfterMs).toBeLessThanOrEqual(CACHE_MS + 1000);
  });

  it("registry writes and /debug without the admin token get 401 and change nothing", async () => {
    const listed = (await w.fetch("/registry/")).json;
    const archive = lambdaArchive(L.versioned(9));
    for (const token of [null, "wrong-token"]) {
      const res = await w.upload("ver", archive, token);
      expect(res.status).toBe(401);
      expect(res.json).toMatchObject({ error: { code: "OL_UNAUTHORIZED" } });
      expect((await w.upload("intruder", archive, token)).status).toBe(401);
    }
    expect((await w.fetch("/registry/ver", { method: "DELETE" })).status).toBe(401);
    expect((await w.fetch("/debug")).status).toBe(401);
    expect((await w.fetch("/debug", { headers: { authorization: "Bearer nope" } })).status).toBe(
      401,
    );
    expect((await w.fetch("/registry/")).json).toEqual(listed);
    expect((await w.run("ver")).json).toEqual({ code: 3, data: 3 });
    expect((await w.run("intruder")).status).toBe(404);
  });

  it("bad archives are refused with a 4xx and change nothing", async () => {
    const listed = (await w.fetch("/registry/")).json as string[];
    expect(listed).toEqual(["echo", "ver"]);
    const good = { name: "f.js", data: "exports.f = () => 'replaced';\n" };
    const absolute = `/tmp/ol-e2e-absolute-${randomBytes(4).toString("hex")}`;
    const cases: [string, Buffer, number, string][] = [
      ["not gzip", Buffer.from("this is not a gzip stream\n".repeat(20)), 400, "OL_BAD_ARCHIVE"],
      ["gzip, not tar", gzipSync("plain text, no tar headers\n".repeat(40)), 400, "OL_BAD_ARCHIVE"],
      ["empty", Buffer.alloc(0), 400, "OL_BAD_ARCHIVE"],
      ["path escape", tarGz([good, { name: "../x", data: "x" }]), 400, "OL_BAD_ARCHIVE"],
      ["nested escape", tarGz([good, { name: "a/../../x", data: "x" }]), 400, "OL_BAD_ARCHIVE"],
      ["absolute path", tarGz([good, { name: absolute, data: "x" }]), 400, "OL_BAD_ARCHIVE"],
      [
        "symlink",
        tarGz([good, { name: "link", type: "2", linkname: "/etc/passwd" }]),
        400,
        "OL_BAD_ARCHIVE",
      ],
      [
        "hard link",
        tarGz([good, { name: "hard", type: "1", linkname: "f.js" }]),
        400,
        "OL_BAD_ARCHIVE",
      ],
      ["device", tarGz([good, { name: "dev", type: "3" }]), 400, "OL_BAD_ARCHIVE"],
      ["no entry file", tarGz([{ name: "README", data: "hi" }]), 400, "OL_BAD_ARCHIVE"],
      [
        "bad ol.yaml",
        tarGz([good, { name: "ol.yaml", data: "limits: {timeout: -1}\n" }]),
        400,
        "OL_INVALID_LAMBDA_CONFIG",
      ],
      ["truncated", tarGz([good]).subarray(0, 40), 400, "OL_BAD_ARCHIVE"],
      ["over 250 MiB extracted", await gzipBomb(260 * 1024 * 1024), 413, "OL_ARCHIVE_TOO_LARGE"],
      ["over 50 MiB compressed", randomBytes(51 * 1024 * 1024), 413, "OL_ARCHIVE_TOO_LARGE"],
    ];
    for (const [what, archive, status, code] of cases) {
      for (const name of ["ver", "fresh"]) {
        const res = await w.upload(name, archive);
        expect(res.status, `${what} → ${name}: ${res.text}`).toBe(status);
        expect(res.json, what).toMatchObject({ error: { code } });
        expect((await w.run("ver")).json, what).toEqual({ code: 3, data: 3 });
        expect((await w.fetch("/registry/")).json, what).toEqual(listed);
      }
    }
    expect((await w.run("fresh")).status).toBe(404);
    expect(existsSync(absolute)).toBe(false);
    expect(existsSync(join(w.dir, "x"))).toBe(false);
    expect(existsSync(join(w.wd.code, "x"))).toBe(false);
    // No half-received upload or half-extracted tree is left behind either.
    expect((await readdir(w.wd.registry)).sort()).toEqual(["echo", "ver.tar.gz"]);
    expect((await readdir(w.wd.code)).filter((n) => n.startsWith("."))).toEqual([]);
  });

  it("a lambda can be deleted with the token", async () => {
    expect((await w.upload("doomed", lambdaArchive(L.echo))).status).toBe(201);
    expect((await w.run("doomed", { body: "1" })).status).toBe(200);
    expect((await w.admin("/registry/doomed", { method: "DELETE" })).status).toBe(204);
    expect((await w.fetch("/registry/")).json).toEqual(["echo", "ver"]);
    expect((await w.run("doomed")).status).toBe(404);
  });

  it("updated and deleted code leaves the disk: the code dir's usage is back to its baseline", async () => {
    const MiB = 1024;
    const codeDir = w.wd.code;
    // Node lambdas may run in a ready runtime whose /handler holds hard links to the code:
    // measured together (du counts an inode once), the blocks must be freed there too.
    const withReady = () => [codeDir, join(w.dir, "ready")].filter((p) => existsSync(p));
    const codeBaseline = duKiB([codeDir]);
    const bothBaseline = duKiB(withReady());
    const big = (v: number): LambdaFiles => ({
      ...L.versioned(v),
      // Random, so neither gzip nor the file system makes it smaller than it is.
      "blob/a.bin": randomBytes(2 * 1024 * 1024),
      "blob/b.bin": randomBytes(2 * 1024 * 1024),
    });
    expect((await w.upload("bulky", lambdaArchive(big(1)))).status).toBe(201);
    expect((await w.run("bulky")).json).toEqual({ code: 1, data: 1 });
    expect(duKiB([codeDir])).toBeGreaterThanOrEqual(codeBaseline + 4 * MiB);

    expect((await w.upload("bulky", lambdaArchive(big(2)))).status).toBe(201);
    expect((await w.run("bulky")).json).toEqual({ code: 2, data: 2 });
    // The old version goes once its sandbox has drained, with no further call needed.
    await expectEventually(() => duKiB([codeDir]) < codeBaseline + 6 * MiB);
    expect(await readdir(join(codeDir, "bulky"))).toHaveLength(1);

    expect((await w.admin("/registry/bulky", { method: "DELETE" })).status).toBe(204);
    expect((await w.run("bulky")).status).toBe(404);
    await expectEventually(() => !existsSync(join(codeDir, "bulky")));
    expect(duKiB([codeDir])).toBeLessThanOrEqual(codeBaseline);
    // Slack for the ready runtimes started meanwhile (empty dirs), far below one 2 MiB file.
    await expectEventually(() => duKiB(withReady()) <= bothBaseline + 512);
  });
});

/** Disk usage of `paths` together (`du -sck`: a hard-linked file counts once), KiB. */
function duKiB(paths: readonly string[]): number {
  const out = execFileSync("du", ["-sck", ...paths], { encoding: "utf8" });
  const total = out.trim().split("\n").at(-1) ?? "";
  return Number(total.split("\t")[0]);
}

async function expectEventually(check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms: ${check.toString()}`);
    await sleep(100);
  }
}

/** A small .tar.gz that expands to one file of `size` zero bytes. */
async function gzipBomb(size: number): Promise<Buffer> {
  const gzip = createGzip({ level: 1 });
  const chunks: Buffer[] = [];
  gzip.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve, reject) => gzip.on("end", resolve).on("error", reject));
  const header = tarBytes([{ name: "f.js", data: "exports.f = () => 1;\n" }]).subarray(0, 1024);
  gzip.write(header);
  gzip.write(tarBytes([{ name: "zeros.bin", size }]).subarray(0, 512));
  const mib = Buffer.alloc(1024 * 1024);
  for (let left = size; left > 0; left -= mib.length) {
    if (!gzip.write(mib)) await new Promise((r) => gzip.once("drain", r));
  }
  gzip.end(Buffer.alloc(1024));
  await done;
  return Buffer.concat(chunks);
}
