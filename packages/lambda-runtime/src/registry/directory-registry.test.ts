import { readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  BadArchiveError,
  InvalidLambdaConfigError,
  InvalidLambdaNameError,
  LambdaNotFoundError,
} from "../errors.js";
import { tarGz, tempDir, writeTree } from "../testing/fixtures.js";
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
});
