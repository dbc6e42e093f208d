import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { join } from "node:path";
import { BackendUnavailableError } from "@openlambda/sandbox-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE_MANIFEST, buildBaseRootfs } from "../src/base-rootfs.js";
import { SockHelperMissingError } from "../src/errors.js";
import { sockBackend } from "../src/sock-backend.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

describe.skipIf(whatIsMissing())("base root filesystem builder", () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let dir: string;
  let hash: string;
  const progress: string[] = [];

  beforeAll(async () => {
    work = await tempDir("ol-sock-base-");
    const started = performance.now();
    ({ dir, hash } = await buildBaseRootfs({
      dir: join(work.path, "base"),
      onProgress: (m) => progress.push(m),
    }));
    // "In seconds": hard links make it well under that on one filesystem.
    expect(performance.now() - started).toBeLessThan(20_000);
  });
  afterAll(() => work?.remove());

  it("has the runtimes, libraries and a generated /etc, and records its hash", () => {
    expect(statSync(join(dir, "usr/local/bin/node")).mode & 0o111).toBeTruthy();
    expect(existsSync(join(dir, "usr/bin/sh"))).toBe(true);
    expect(existsSync(join(dir, "etc/ssl/certs/ca-certificates.crt"))).toBe(true);
    expect(readFileSync(join(dir, "etc/passwd"), "utf8")).toMatch(/^nobody:x:65534:65534:/m);
    expect(readFileSync(join(dir, "etc/nsswitch.conf"), "utf8")).toMatch(/^hosts: files dns$/m);
    for (const m of ["handler", "host", "packages", "tmp", "proc", "dev"]) {
      expect(statSync(join(dir, m)).isDirectory()).toBe(true);
    }
    if (lstatSync("/bin").isSymbolicLink())
      expect(readlinkSync(join(dir, "bin"))).toBe(readlinkSync("/bin"));
    const manifest = JSON.parse(readFileSync(join(dir, BASE_MANIFEST), "utf8")) as { hash: string };
    expect(manifest.hash).toBe(hash);
  });

  it("never takes /root, /home, the host's /etc/shadow, ssh keys or TLS private keys", () => {
    for (const p of [
      "root",
      "home",
      "etc/shadow",
      "etc/gshadow",
      "etc/ssh",
      "etc/ssl/private",
      "usr/local/lib",
      "work",
    ]) {
      expect(existsSync(join(dir, p)), p).toBe(false);
    }
  });

  it("skips the rebuild when nothing changed, and rebuilds when forced", async () => {
    const builtAt = () =>
      (JSON.parse(readFileSync(join(dir, BASE_MANIFEST), "utf8")) as { builtAt: string }).builtAt;
    const first = builtAt();
    const again = await buildBaseRootfs({ dir });
    expect(again.hash).toBe(hash);
    expect(builtAt()).toBe(first);
    await new Promise((r) => setTimeout(r, 5));
    const forced = await buildBaseRootfs({ dir, force: true });
    expect(forced.hash).toBe(hash);
    expect(builtAt()).not.toBe(first);
  });

  it("takes python only from /usr", async () => {
    const other = await buildBaseRootfs({
      dir: join(work.path, "base-nopy"),
      pythonBinary: process.execPath,
      onProgress: (m) => progress.push(m),
    });
    expect(existsSync(join(other.dir, "usr/local/bin/python3"))).toBe(false);
    expect(progress.some((m) => /no python: .* is outside \/usr/.test(m))).toBe(true);
  });
});

describe.skipIf(whatIsMissing())("host checks at start", () => {
  it("refuses a base dir that is not a base, naming what it lacks", async () => {
    const work = await tempDir("ol-sock-nobase-");
    try {
      const make = () => sockBackend({ workDir: work.path, baseDir: work.path });
      expect(make).toThrow(BackendUnavailableError);
      expect(make).toThrow(/lacks \/handler, \/host, .*build one with buildBaseRootfs/);
    } finally {
      await work.remove();
    }
  });

  it("reports a missing helper binary with OL_SOCK_HELPER_MISSING", async () => {
    const base = await testBase();
    expect(() =>
      sockBackend({ workDir: "/tmp/x", baseDir: base, helperPath: "/nonexistent/ol-sock-helper" }),
    ).toThrow(SockHelperMissingError);
  });
});
