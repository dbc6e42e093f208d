/**
 * Node lambdas with dependencies, TypeScript lambdas and ready runtimes (zygotes) through a real
 * worker (issue 5's "Done when"). Dependencies come from the npm registry.
 */
import { existsSync } from "node:fs";
import { lstat, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { describeBackends, lambdaArchive, Worker } from "./harness.js";
import { expectSealedTree } from "./sealed-tree.js";

const isNumber = {
  "package.json": JSON.stringify({ dependencies: { "is-number": "7.0.0" } }),
  "f.js":
    'const isNumber = require("is-number");\nexports.f = (e) => ({ isNumber: isNumber(e.x) });\n',
};
const isNumberEsm = {
  "package.json": JSON.stringify({ dependencies: { "is-number": "^7.0.0" } }),
  "f.mjs":
    'import isNumber from "is-number";\nexport const f = (e) => ({ again: isNumber(e.x) });\n',
};
// What a lambda can see of its sandbox: its /handler, and a mark it leaves in its own /tmp.
const probe = (who: string) => ({
  "f.js": `const fs = require("node:fs");
exports.f = () => {
  const seen = fs.existsSync("/tmp/mark") ? fs.readFileSync("/tmp/mark", "utf8") : null;
  fs.writeFileSync("/tmp/mark", "${who}");
  return { who: "${who}", handler: fs.readdirSync("/handler").sort(), seenMark: seen, pid: process.pid };
};
`,
});

await describeBackends("Node packages, TypeScript and zygotes", (backend) => {
  let w: Worker;
  beforeAll(async () => {
    w = await Worker.start({
      backend,
      options: ["pause_idle_ms=1000"],
      lambdas: { nums: isNumber, nums2: isNumberEsm, zga: probe("a"), zgb: probe("b") },
    });
  }, 300_000);
  afterAll(async () => {
    await w?.stop();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
  });

  it("installs a lambda's dependency from the npm registry and runs with it", async () => {
    const res = await w.run("nums", { body: { x: 5 } });
    expect([res.status, res.json]).toEqual([200, { isNumber: true }]);
    expect((await w.run("nums", { body: { x: "no" } })).json).toEqual({ isNumber: false });
  }, 180_000);

  it("leaves the installed tree root-owned and writable by root only", async () => {
    await w.run("nums", { body: { x: 1 } });
    const deps = join(w.dir, "deps");
    const installs = (await readdir(deps)).filter((name) =>
      existsSync(join(deps, name, ".ol-installed")),
    );
    expect(installs.length).toBeGreaterThanOrEqual(1);
    for (const name of installs) {
      // node_modules, is-number's files and pnpm's links: far more than a handful.
      expect(await expectSealedTree(join(deps, name))).toBeGreaterThan(5);
    }
    // Installers are handed deps/installer only; deps itself stays root's, so none can rename
    // an install away and plant another under its name.
    const root = await lstat(deps);
    expect([root.uid, root.mode & 0o7777]).toEqual([0, 0o755]);
  }, 180_000);

  it("shares one store: a second lambda with the same package version downloads nothing new", async () => {
    // pnpm's content-addressed files; its per-project registry (store/v10/projects) may grow.
    const storeFiles = async () =>
      (
        await readdir(join(w.dir, "deps", "installer", "store", "v10", "files"), {
          recursive: true,
        })
      ).length;
    await w.run("nums", { body: { x: 1 } });
    const before = await storeFiles();
    const res = await w.run("nums2", { body: { x: 2 } });
    expect([res.status, res.json]).toEqual([200, { again: true }]);
    expect(await storeFiles()).toBe(before);
  }, 180_000);

  it("answers a bad dependency with a 500 naming it, and works after a fixed upload", async () => {
    const bad = lambdaArchive({
      "package.json": JSON.stringify({ dependencies: { "ol-no-such-package-4f9a2c": "1.0.0" } }),
      "f.js": "exports.f = () => 'fixed';",
    });
    expect((await w.upload("fragile", bad)).status).toBe(201);
    const failed = await w.run("fragile", { body: {} });
    expect(failed.status).toBe(500);
    expect(failed.json).toMatchObject({ error: { code: "OL_DEPENDENCY_INSTALL_FAILED" } });
    expect((failed.json as { error: { message: string } }).error.message).toContain(
      "ol-no-such-package-4f9a2c",
    );
    const fixed = lambdaArchive({
      "package.json": JSON.stringify({ dependencies: {} }),
      "f.js": "exports.f = () => 'fixed';",
    });
    expect((await w.upload("fragile", fixed)).status).toBe(201);
    await new Promise((r) => setTimeout(r, 5200)); // registry_cache_ms
    const ok = await w.run("fragile", { body: {} });
    expect([ok.status, ok.json]).toEqual([200, "fixed"]);
  }, 180_000);

  it("runs a TypeScript lambda that imports another .ts file", async () => {
    const archive = lambdaArchive({
      "f.ts":
        'import { greet } from "./greet.ts";\ninterface In { name?: string }\nexport function f(e: In): string { return greet(e.name ?? "ts"); }\n',
      "greet.ts": 'export const greet = (n: string): string => "hello " + n;\n',
    });
    expect((await w.upload("typed", archive)).status).toBe(201);
    const res = await w.run("typed", { body: { name: "Ada" } });
    expect([res.status, res.json]).toEqual([200, "hello Ada"]);
  });

  it("ol admin install shows the dependency install as it runs, before any call", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ol-e2e-src-"));
    try {
      await writeFile(
        join(dir, "package.json"),
        JSON.stringify({ dependencies: { "is-odd": "3.0.1" } }),
      );
      await writeFile(
        join(dir, "f.js"),
        'const isOdd = require("is-odd");\nexports.f = (e) => isOdd(e.n);\n',
      );
      const out = w.wd.ol(["admin", "install", "-p", w.dir, "--url", w.url, "-n", "odd", dir]);
      expect(out.status, out.stderr).toBe(0);
      expect(out.stderr).toContain("preparing odd");
      expect(out.stderr).toMatch(/is-odd 3\.0\.1/); // pnpm's own output, streamed
      expect(out.stdout).toContain("installed odd");
      const res = await w.run("odd", { body: { n: 3 } });
      expect([res.status, res.json]).toEqual([200, true]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it("refuses a TypeScript syntax error at upload, naming file and line, changing nothing", async () => {
    const res = await w.upload(
      "broken-ts",
      lambdaArchive({ "f.ts": "export function f() {\n  return 1 +;\n}\n" }),
    );
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: { code: "OL_LAMBDA_BUILD_FAILED" } });
    expect((res.json as { error: { message: string } }).error.message).toMatch(/f\.ts:2:\d+/);
    expect((await w.run("broken-ts")).status).toBe(404);
  });

  it("gives each lambda its own ready runtime: what lambda A had is never visible to B", async () => {
    const a = await w.run("zga", { body: {} });
    const b = await w.run("zgb", { body: {} });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    const ra = a.json as { handler: string[]; seenMark: string | null };
    const rb = b.json as { handler: string[]; seenMark: string | null };
    expect(ra.handler).toEqual(["f.js"]);
    expect(rb.handler).toEqual(["f.js"]);
    expect(ra.seenMark).toBeNull();
    expect(rb.seenMark).toBeNull(); // B's sandbox never had A's /tmp
    const stats = (await w.fetch("/stats")).json as Record<string, number>;
    expect(stats["zygote.hits.root"]).toBeGreaterThanOrEqual(1);
    const view = await w.debug();
    const sandboxOf = (name: string) =>
      view.lambdas.find((l) => l.name === name)?.instances[0]?.sandbox?.id;
    expect(sandboxOf("zga")).toBeDefined();
    expect(sandboxOf("zga")).not.toBe(sandboxOf("zgb"));
  });
});
