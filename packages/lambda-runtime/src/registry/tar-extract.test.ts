import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArchiveTooLargeError, BadArchiveError } from "../errors.js";
import { tarGz, tempDir } from "../testing/fixtures.js";
import { extractTarGz, safePath } from "./tar-extract.js";

/** One raw ustar header + data, for entries the system tar would not make for us. */
function entry(name: string, type: string, data = "", extra: { linkname?: string } = {}): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, "utf8");
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${Buffer.byteLength(data).toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write(type, 156);
  if (extra.linkname) header.write(extra.linkname, 157, 100);
  header.write("ustar\0", 257);
  header.write("00", 263);
  header.fill(" ", 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(Buffer.byteLength(data) / 512) * 512);
  body.write(data);
  return Buffer.concat([header, body]);
}

const archive = (...entries: Buffer[]) => gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)]));
const limits = { maxExtractedBytes: 1024 * 1024, maxEntries: 100 };

async function* chunks(buf: Buffer, size = 777): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

describe("extractTarGz", () => {
  let dest: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir: dest, cleanup } = await tempDir("ol-extract-"));
  });
  afterEach(() => cleanup());

  it("extracts a real tar.gz with nested dirs, world-readable, in small chunks", async () => {
    const gz = await tarGz({
      "f.js": "exports.f = () => 1;\n",
      "lib/util.js": "x".repeat(5000),
      "ol.yaml": "",
    });
    const result = await extractTarGz(chunks(gz), dest, limits);
    expect(result.files).toBe(3);
    expect(result.bytes).toBe(21 + 5000);
    expect(result.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await readFile(join(dest, "lib/util.js"), "utf8")).toBe("x".repeat(5000));
    expect((await stat(join(dest, "f.js"))).mode & 0o444).toBe(0o444);
  });

  it.each([
    ["a path escaping the root", entry("../evil.js", "0", "x"), /escapes the archive's root/],
    ["an absolute path", entry("/etc/evil", "0", "x"), /absolute path/],
    ["a symbolic link", entry("link", "2", "", { linkname: "/etc/shadow" }), /symbolic link/],
    ["a hard link", entry("hard", "1", "", { linkname: "f.js" }), /hard link/],
    ["a character device", entry("dev", "3"), /character device/],
    ["a FIFO", entry("fifo", "6"), /FIFO/],
  ])("refuses %s with OL_BAD_ARCHIVE and writes nothing outside", async (_what, bad, message) => {
    const gz = archive(entry("f.js", "0", "ok"), bad);
    const error = await extractTarGz(chunks(gz), dest, limits).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BadArchiveError);
    expect((error as Error).message).toMatch(message);
    // Only what came before the bad entry is in dest; nothing was written beside it.
    expect((await readdir(dest)).filter((n) => n !== "f.js")).toEqual([]);
  });

  it("refuses data that is not gzip, and gzip that is not tar", async () => {
    await expect(
      extractTarGz(chunks(Buffer.from("hello world")), dest, limits),
    ).rejects.toBeInstanceOf(BadArchiveError);
    await expect(
      extractTarGz(chunks(gzipSync(Buffer.alloc(512, 7))), dest, limits),
    ).rejects.toThrow(/checksum/);
  });

  it("refuses a truncated archive", async () => {
    const full = Buffer.concat([entry("f.js", "0", "y".repeat(3000))]);
    await expect(
      extractTarGz(chunks(gzipSync(full.subarray(0, 1024))), dest, limits),
    ).rejects.toBeInstanceOf(BadArchiveError);
  });

  it("refuses archives past the size and entry limits", async () => {
    const big = archive(entry("f.js", "0", "z".repeat(2000)));
    await expect(
      extractTarGz(chunks(big), dest, { ...limits, maxExtractedBytes: 1000 }),
    ).rejects.toBeInstanceOf(ArchiveTooLargeError);
    const many = archive(...Array.from({ length: 5 }, (_, i) => entry(`f${i}.js`, "0", "1")));
    await expect(extractTarGz(chunks(many), dest, { ...limits, maxEntries: 3 })).rejects.toThrow(
      /more than 3 entries/,
    );
  });

  it("normalises safe paths", () => {
    expect(safePath("./a//b/./c.js")).toBe("a/b/c.js");
    expect(() => safePath("a/../../b")).toThrow(BadArchiveError);
  });
});
