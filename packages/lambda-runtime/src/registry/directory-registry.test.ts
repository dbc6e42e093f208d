import { mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  BadArchiveError,
  InvalidLambdaConfigError,
  InvalidLambdaNameError,
  LambdaNotFoundError,
} from "../errors.js";
import { lambdaLimitMaxima } from "../sandbox-limits.js";
import { tarGz, tempDir, writeTree } from "../testing/fixtures.js";
import { parseWorkerConfig } from "../worker-config.js";
import { DirectoryRegistry } from "./directory-registry.js";

async function* once(buf: Buffer): AsyncGenerator<Uint8Array> {
  yield buf;
}

describe("DirectoryRegistry", () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let registry: DirectoryRegistry;

  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir("ol-registry-"));
    registry = new DirectoryRegistry({
      dir: join(root, "reg"),
      codeCacheDir: join(root, "code"),
      cacheMs: 100,
    });
    await registry.init();
  });
  afterEach(() => cleanup());

  it("stores an upload, lists it, and serves its extracted code and config", async () => {
    const gz = await tarGz({
      "f.js": "exports.f = (e) => e;",
      "ol.yaml": "environment:\n  GREETING: hi\n",
    });
    const { version } = await registry.upload("echo", once(gz));
    expect(await registry.list()).toEqual(["echo"]);
    const code = await registry.get("echo");
    expect(code.version).toBe(version);
    expect(await readFile(join(code.dir, "f.js"), "utf8")).toContain("exports.f");
    expect(code.config.environment).toEqual({ GREETING: "hi" });
    expect((await registry.config("echo")).reuseSandbox).toBe(true);
  });

  it("serves plain directories and notices their changes after the cache window", async () => {
    await writeTree(join(root, "reg", "plain"), { "f.js": "exports.f = () => 1;" });
    const first = await registry.get("plain");
    expect(first.dir).toBe(join(root, "reg", "plain"));
    await writeFile(join(root, "reg", "plain", "f.js"), "exports.f = () => 22;");
    const later = new Date(Date.now() + 5000);
    await utimes(join(root, "reg", "plain", "f.js"), later, later);
    expect((await registry.get("plain")).version).toBe(first.version);
    await sleep(150);
    expect((await registry.get("plain")).version).not.toBe(first.version);
  });

  it("refuses a bad upload and keeps serving the previous version, leaving no temp files", async () => {
    const { version } = await registry.upload(
      "app",
      once(await tarGz({ "f.js": "exports.f = () => 1;" })),
    );
    const bad = [
      Buffer.from("not an archive"),
      await tarGz({ "README.md": "no entry file" }),
      await tarGz({ "f.js": "x", "ol.yaml": "nonsense-key: 1\n" }),
    ];
    for (const archive of bad) {
      const error = await registry.upload("app", once(archive)).catch((e: unknown) => e);
      expect(error instanceof BadArchiveError || error instanceof InvalidLambdaConfigError).toBe(
        true,
      );
    }
    await sleep(150);
    expect((await registry.get("app")).version).toBe(version);
    expect((await readdir(join(root, "reg"))).sort()).toEqual(["app.tar.gz"]);
    expect((await readdir(join(root, "code"))).sort()).toEqual(["app"]);
  });

  describe("with the worker's limit maxima", () => {
    const huge = "limits:\n  memory: 1048576\n  cpu: 100000\n  timeout: 94608000\n";
    let bounded: DirectoryRegistry;
    beforeEach(async () => {
      bounded = new DirectoryRegistry({
        dir: join(root, "reg"),
        codeCacheDir: join(root, "code"),
        cacheMs: 100,
        limitMaxima: lambdaLimitMaxima(parseWorkerConfig({}, root)),
      });
      await bounded.init();
    });

    it("refuses an upload over a maximum, naming it, and keeps serving the previous version", async () => {
      const ok = await tarGz({
        "f.js": "exports.f = () => 1;",
        "ol.yaml": "limits:\n  memory: 1024\n",
      });
      const { version } = await bounded.upload("app", once(ok));
      const error = await bounded
        .upload("app", once(await tarGz({ "f.js": "exports.f = () => 2;", "ol.yaml": huge })))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidLambdaConfigError);
      expect((error as Error).message).toBe(
        "ol.yaml: limits.memory is 1048576, over the worker's maximum of 1024 (config limits.max_mem_mb)",
      );
      const code = await bounded.get("app");
      expect(code.version).toBe(version);
      expect(code.config.limits).toEqual({ memMb: 1024 });
      expect(await readdir(join(root, "reg"))).toEqual(["app.tar.gz"]);
      expect(await readdir(join(root, "code", "app"))).toHaveLength(1);
    });

    it("refuses a registry dir or archive over a maximum when it is first read", async () => {
      await writeTree(join(root, "reg", "plain"), {
        "f.js": "exports.f = () => 1;",
        "ol.yaml": huge,
      });
      await expect(bounded.get("plain")).rejects.toThrow(/limits.memory is 1048576/);
      await writeFile(
        join(root, "reg", "dropped.tar.gz"),
        await tarGz({ "f.js": "exports.f = () => 1;", "ol.yaml": "limits:\n  disk: 513\n" }),
      );
      await expect(bounded.get("dropped")).rejects.toThrow(
        "ol.yaml: limits.disk is 513, over the worker's maximum of 512 (config limits.max_disk_mb)",
      );
      // The registry without maxima (a library user's) takes both.
      expect((await registry.get("plain")).config.limits.memMb).toBe(1048576);
    });
  });

  it("an archive replaced on disk becomes a new version after the cache window", async () => {
    const v1 = await registry.upload("swap", once(await tarGz({ "f.js": "exports.f = () => 1;" })));
    expect((await registry.get("swap")).version).toBe(v1.version);
    await writeFile(
      join(root, "reg", "swap.tar.gz"),
      await tarGz({ "f.js": "exports.f = () => 2;" }),
    );
    await sleep(150);
    const code = await registry.get("swap");
    expect(code.version).not.toBe(v1.version);
    expect(await readFile(join(code.dir, "f.js"), "utf8")).toContain("2");
  });

  it("answers OL_LAMBDA_NOT_FOUND and OL_INVALID_LAMBDA_NAME", async () => {
    await expect(registry.get("missing")).rejects.toBeInstanceOf(LambdaNotFoundError);
    for (const name of ["../x", "a/b", "", "..", "a b"]) {
      await expect(registry.get(name)).rejects.toBeInstanceOf(InvalidLambdaNameError);
      await expect(registry.upload(name, once(Buffer.from("x")))).rejects.toBeInstanceOf(
        InvalidLambdaNameError,
      );
    }
  });

  it("removes a lambda", async () => {
    await registry.upload("gone", once(await tarGz({ "f.js": "exports.f = () => 1;" })));
    expect(await registry.remove("gone")).toBe(true);
    expect(await registry.remove("gone")).toBe(false);
    await expect(stat(join(root, "reg", "gone.tar.gz"))).rejects.toThrow();
    await sleep(150);
    await expect(registry.get("gone")).rejects.toBeInstanceOf(LambdaNotFoundError);
  });

  describe("code on disk", () => {
    const app = (n: number) =>
      tarGz({ "f.js": `exports.f = () => ${n};`, "data.bin": "d".repeat(64 * 1024) });
    const versions = (name: string) =>
      readdir(join(root, "code", name)).catch(() => [] as string[]);

    it("removes an old version once it is not current and nothing holds it", async () => {
      await registry.upload("app", once(await app(1)));
      const held = await registry.acquire("app");
      const v1dir = held.code.dir;
      await registry.upload("app", once(await app(2)));
      expect(held.current).toBe(false);
      await registry.settled();
      // A holder (a call, an instance) keeps the old version's files.
      expect(await readFile(join(v1dir, "f.js"), "utf8")).toContain("1");
      expect(await versions("app")).toHaveLength(2);
      held.release();
      await registry.settled();
      await expect(stat(v1dir)).rejects.toThrow(/ENOENT/);
      const current = await registry.get("app");
      expect(await versions("app")).toEqual([current.dir.split("/").at(-1)]);
    });

    it("removes every version of a deleted lambda, after its last holder, and nothing else", async () => {
      await registry.upload("app", once(await app(1)));
      await registry.upload("other", once(await app(7)));
      const held = await registry.acquire("app");
      expect(await registry.remove("app")).toBe(true);
      await registry.settled();
      expect(await readFile(join(held.code.dir, "f.js"), "utf8")).toContain("1");
      await expect(registry.acquire("app")).rejects.toBeInstanceOf(LambdaNotFoundError);
      held.release();
      await registry.settled();
      expect((await readdir(join(root, "code"))).sort()).toEqual(["other"]);
      expect(await versions("other")).toHaveLength(1);
      expect((await registry.get("other")).version).toBeTruthy();
    });

    it("does not follow a symbolic link while removing a version", async () => {
      const outside = join(root, "outside");
      await writeTree(outside, { "keep.txt": "still here" });
      await registry.upload("app", once(await app(1)));
      const { dir } = await registry.get("app");
      // What the dependency installer puts into a code dir: a link to elsewhere.
      await symlink(outside, join(dir, "node_modules"));
      await registry.remove("app");
      await registry.settled();
      await expect(stat(dir)).rejects.toThrow(/ENOENT/);
      expect(await readFile(join(outside, "keep.txt"), "utf8")).toBe("still here");
    });

    it("a version deleted and uploaded again while still held is shared, then removed once", async () => {
      await registry.upload("app", once(await app(1)));
      const held = await registry.acquire("app");
      await registry.remove("app");
      await registry.upload("app", once(await app(1)));
      const again = await registry.acquire("app");
      expect(again.code).toBe(held.code);
      held.release();
      again.release();
      await registry.settled();
      expect(await readFile(join(again.code.dir, "f.js"), "utf8")).toContain("1");
      await registry.remove("app");
      await registry.settled();
      expect(await readdir(join(root, "code"))).toEqual([]);
    });

    it("an archive replaced on disk drops the old version at the next refresh", async () => {
      await registry.upload("swap", once(await app(1)));
      const old = (await registry.get("swap")).dir;
      await writeFile(join(root, "reg", "swap.tar.gz"), await app(2));
      await sleep(150);
      const now = await registry.get("swap");
      await registry.settled();
      await expect(stat(old)).rejects.toThrow(/ENOENT/);
      expect(await versions("swap")).toEqual([now.dir.split("/").at(-1)]);
    });

    it("init() removes what an earlier run left in the code cache, and only that", async () => {
      const code = join(root, "code");
      const outside = join(root, "outside");
      await writeTree(outside, { "keep.txt": "still here" });
      await writeTree(join(code, "old", "0123456789abcdef-1a2b3c4d"), { "f.js": "stale" });
      await writeTree(join(code, ".extract-1a2b3c4d"), { "half.js": "x" });
      await writeTree(join(code, "not ours!"), { "x.txt": "x" });
      await symlink(outside, join(code, "linked"));
      await mkdir(join(code, "empty"));
      const fresh = new DirectoryRegistry({
        dir: join(root, "reg"),
        codeCacheDir: code,
        cacheMs: 100,
      });
      await fresh.init();
      expect(await readdir(code)).toEqual(["not ours!"]);
      expect(await readFile(join(outside, "keep.txt"), "utf8")).toBe("still here");
    });
  });
});
