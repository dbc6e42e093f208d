import { lstat, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArchiveTooLargeError, BadArchiveError } from "../errors.js";
import { tarGz, tempDir } from "../testing/fixtures.js";
import { extractTarGz, safePath } from "./tar-extract.js";

interface RawEntry {
  readonly name?: string;
  readonly type?: string;
  readonly data?: string | Buffer;
  /** The size field: a number (written as octal), or the field's raw text or bytes. */
  readonly size?: number | string | Buffer;
  readonly mode?: string | Buffer;
  readonly linkname?: string;
  readonly magic?: string;
  /** Leave the checksum as the fields make it (true), or write these bytes into it. */
  readonly checksum?: Buffer;
}

/** One raw ustar header + data, for entries the system tar would not make for us. */
function raw(e: RawEntry): Buffer {
  const data = Buffer.from(e.data ?? "");
  const header = Buffer.alloc(512);
  header.write(e.name ?? "f.js", 0, 100, "utf8");
  field(header, 100, 8, e.mode ?? "0000644\0");
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  const size = e.size ?? data.length;
  field(
    header,
    124,
    12,
    typeof size === "number" ? `${size.toString(8).padStart(11, "0")}\0` : size,
  );
  header.write("00000000000\0", 136);
  header.write(e.type ?? "0", 156, 1, "latin1");
  if (e.linkname) header.write(e.linkname, 157, 100);
  header.write(e.magic ?? "ustar\0", 257, "latin1");
  header.write("00", 263);
  if (e.checksum) e.checksum.copy(header, 148, 0, 8);
  else {
    header.fill(" ", 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  }
  const body = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  data.copy(body);
  return Buffer.concat([header, body]);
}

function field(header: Buffer, at: number, length: number, value: string | Buffer): void {
  header.fill(0, at, at + length);
  if (typeof value === "string") header.write(value, at, length, "latin1");
  else value.copy(header, at, 0, length);
}

function entry(name: string, type: string, data = "", extra: { linkname?: string } = {}): Buffer {
  return raw({ name, type, data, ...extra });
}

/** A PAX record with a correct length field. */
function record(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length++;
  return `${length}${body}`;
}

const pax = (records: string | Buffer, type = "x") =>
  raw({ name: "PaxHeader/x", type, data: Buffer.from(records) });

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

/** Every regular file under `dir` (and its size); anything else (a link, a device) throws. */
async function filesUnder(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await readdir(dir, { recursive: true })) {
    const path = join(dir, name);
    const s = await lstat(path);
    if (s.isFile()) out.set(name, s.size);
    else if (!s.isDirectory()) throw new Error(`${path} is neither a file nor a directory`);
  }
  return out;
}

const sum = (files: Map<string, number>) => [...files.values()].reduce((a, b) => a + b, 0);

describe("extractTarGz: numeric fields are parsed strictly", () => {
  let dest: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir: dest, cleanup } = await tempDir("ol-extract-num-"));
  });
  afterEach(() => cleanup());

  const small = { maxExtractedBytes: 1000, maxEntries: 100 };
  const refuse = async (
    gz: Buffer,
    message: RegExp,
    kind: typeof BadArchiveError | typeof ArchiveTooLargeError = BadArchiveError,
  ) => {
    const error = await extractTarGz(chunks(gz), dest, small).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(kind);
    expect((error as { code: string }).code).toBe(
      kind === BadArchiveError ? "OL_BAD_ARCHIVE" : "OL_ARCHIVE_TOO_LARGE",
    );
    expect((error as Error).message).toMatch(message);
  };

  it("regression: a PAX size=NaN no longer switches the size cap off", async () => {
    // Before: NaN made every later `bytes > cap` false, and 8000 bytes went past a 1000-byte cap.
    const gz = archive(
      pax(record("size", "NaN")),
      entry("a", "0"),
      entry("big.bin", "0", "A".repeat(8000)),
    );
    await refuse(gz, /PAX size "NaN" is not a decimal number/);
    expect(await filesUnder(dest)).toEqual(new Map());
  });

  it("regression: a negative base-256 size is refused", async () => {
    const minusOne = Buffer.alloc(12, 0xff);
    await refuse(archive(raw({ name: "f.js", size: minusOne, data: "x" })), /negative/);
    const minusBig = Buffer.concat([Buffer.from([0xc0]), Buffer.alloc(11)]);
    await refuse(archive(raw({ name: "f.js", size: minusBig })), /negative/);
    expect(await filesUnder(dest)).toEqual(new Map());
  });

  it("regression: a PAX size over the cap is refused before a byte of it is written", async () => {
    const data = "B".repeat(2000);
    await refuse(
      archive(pax(record("size", "2000")), raw({ name: "big.bin", size: 0, data })),
      /extracted size over 1000 bytes/,
      ArchiveTooLargeError,
    );
    // A size that lies far past the data behind it is refused the same way, not read as "truncated".
    await refuse(
      archive(pax(record("size", String(2 ** 52))), entry("huge.bin", "0", "tiny")),
      /extracted size over 1000 bytes/,
      ArchiveTooLargeError,
    );
    expect(await filesUnder(dest)).toEqual(new Map());
  });

  it("the cap counts what was written across files, and stops before the file that would pass it", async () => {
    const gz = archive(entry("a.bin", "0", "a".repeat(600)), entry("b.bin", "0", "b".repeat(600)));
    await refuse(gz, /over 1000 bytes \(b.bin is 600 bytes\)/, ArchiveTooLargeError);
    expect(await filesUnder(dest)).toEqual(new Map([["a.bin", 600]]));
  });

  it.each([
    ["letters in octal", "0000000012x\0", /not an octal digit/],
    ["a minus sign", "-0000000012\0", /not an octal digit/],
    ["an 8", "00000000018\0", /not an octal digit/],
    ["junk after the NUL", "12\0junk\0\0\0\0\0\0", /not an octal digit/],
    ["a space inside", "00 0000012\0", /not an octal digit/],
    ["an empty field", "\0".repeat(12), /is empty/],
    ["spaces only", " ".repeat(12), /is empty/],
  ])("refuses a size field with %s", async (_what, size, message) => {
    await refuse(archive(raw({ name: "f.js", size, data: "x".repeat(10) })), message);
    expect(await filesUnder(dest)).toEqual(new Map());
  });

  it("refuses a base-256 size past Number.MAX_SAFE_INTEGER, and bad mode and checksum fields", async () => {
    const huge = Buffer.concat([Buffer.from([0x80, 0, 0, 0, 0]), Buffer.alloc(7, 0xff)]);
    await refuse(archive(raw({ name: "f.js", size: huge })), /too large \(base-256\)/);
    await refuse(archive(raw({ name: "f.js", mode: "06x4\0\0\0\0" })), /mode field .* octal/);
    await refuse(
      archive(raw({ name: "f.js", checksum: Buffer.from("NaN\0\0\0\0\0") })),
      /checksum field/,
    );
    expect(await filesUnder(dest)).toEqual(new Map());
  });

  it.each([
    ["size=-1", record("size", "-1"), /PAX size "-1"/],
    ["size=1e3", record("size", "1e3"), /PAX size "1e3"/],
    ["size=0x10", record("size", "0x10"), /PAX size "0x10"/],
    ["size=+5", record("size", "+5"), /PAX size "\+5"/],
    ["size= 5", record("size", " 5"), /PAX size " 5"/],
    ["size=5 (trailing space)", record("size", "5 "), /PAX size "5 "/],
    ["size=007", record("size", "007"), /PAX size "007"/],
    ["an empty size", record("size", ""), /PAX size ""/],
    ["size past MAX_SAFE_INTEGER", record("size", "9007199254740993"), /too large/],
    ["Infinity", record("size", "Infinity"), /not a decimal/],
    ["a length longer than the data", "99 size=1\n", /does not match/],
    ["a length shorter than the record", "9 size=12\n", /does not match/],
    ["a length of zero", "0 size=1\n", /does not match/],
    ["a length that is not a number", "x size=1\n", /not a decimal number/],
    ["a negative length", "-10 size=1\n", /not a decimal number/],
    ["NaN as the length", "NaN size=1\n", /not a decimal number/],
    ["no space after the length", "11size=1234\n", /has no length/],
    ["no newline at the end", "10 size=12", /does not match/],
    ["no key=value", "11 nothing\n", /no key=value/],
    ["bytes after the last record", `${record("size", "1")}\0\0\0`, /has no length/],
    ["a sparse file", record("GNU.sparse.major", "1"), /sparse files are not supported/],
    ["text that is not UTF-8", Buffer.from("8 k=\xff\xfe\xfd\n", "latin1"), /not UTF-8/],
  ])("refuses a PAX header with %s", async (_what, records, message) => {
    await refuse(archive(pax(records), entry("f.js", "0", "x".repeat(10))), message);
    expect(await filesUnder(dest)).toEqual(new Map());
  });

  it("refuses a global header that sets size or path, and an extended header with no entry", async () => {
    await refuse(archive(pax(record("size", "1"), "g"), entry("f.js", "0", "x")), /global/);
    await refuse(archive(pax(record("path", "a"), "g"), entry("f.js", "0", "x")), /global/);
    await refuse(archive(entry("f.js", "0", "x"), pax(record("path", "a"))), /no entry/);
  });

  it("refuses GNU long names that lie, and extended headers without end", async () => {
    await refuse(
      archive(raw({ name: "././@LongLink", type: "L", data: "" }), entry("f.js", "0")),
      /long name is empty/,
    );
    await refuse(
      archive(raw({ name: "././@LongLink", type: "L", data: "f.js\0evil" }), entry("x", "0")),
      /bytes after its end/,
    );
    await refuse(
      archive(raw({ name: "././@LongLink", type: "L", size: "77777777777\0" }), entry("x", "0")),
      /over 1 MiB/,
    );
    const many = Array.from({ length: 9 }, () => pax(record("comment", "x")));
    await refuse(archive(...many, entry("f.js", "0")), /more than 8 extended headers/);
    const big = Array.from({ length: 9 }, () =>
      pax(record("comment", "c".repeat(1024 * 1024 - 20))),
    );
    await refuse(archive(...big.flatMap((b) => [b, entry("f.js", "5")])), /over 8 MiB in total/);
  });

  it("refuses a directory that claims data, and a bomb after the end-of-archive marker", async () => {
    await refuse(archive(raw({ name: "d/", type: "5", size: 600 })), /claims 600 bytes/);
    await refuse(
      archive(pax(record("size", "10")), raw({ name: "d", type: "5" })),
      /claims 10 bytes/,
    );
    const bomb = gzipSync(
      Buffer.concat([entry("f.js", "0", "ok"), Buffer.alloc(1024), Buffer.alloc(4 * 1024 * 1024)]),
    );
    await refuse(bomb, /after the end-of-archive marker/);
  });

  it("accepts what real tars write: base-256, padded octal, PAX size and path, GNU long names", async () => {
    const base256 = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(10), Buffer.from([5])]);
    const longName = `deep/${"n".repeat(150)}.js`;
    const gz = archive(
      raw({ name: "b256.txt", size: base256, data: "12345" }),
      raw({ name: "spaces.txt", size: "        12 \0", data: "x".repeat(10) }),
      raw({ name: "full.txt", size: "000000000003", data: "abc" }),
      pax(record("comment", "made by hand") + record("path", "über/päx.txt") + record("size", "4")),
      raw({ name: "ignored", size: 0, data: "päx" }),
      pax(record("comment", "git archive writes one of these"), "g"),
      raw({ name: "././@LongLink", type: "L", data: `${longName}\0\0\0` }),
      entry("short", "0", "long"),
      raw({ name: "v7dir/", type: "\0" }),
      entry("v7dir/in.txt", "0", "v7"),
    );
    const result = await extractTarGz(chunks(gz), dest, small);
    expect(await filesUnder(dest)).toEqual(
      new Map([
        ["b256.txt", 5],
        ["spaces.txt", 10],
        ["full.txt", 3],
        ["über/päx.txt", 4],
        [longName, 4],
        ["v7dir/in.txt", 2],
      ]),
    );
    expect(result).toMatchObject({ files: 6, bytes: 28 });
    expect(await readFile(join(dest, "über/päx.txt"), "utf8")).toBe("päx");
  });
});

describe("extractTarGz under adversarial archives (property)", () => {
  const cap = 4096;
  const fuzzLimits = { maxExtractedBytes: cap, maxEntries: 40 };
  let root: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir("ol-extract-fuzz-"));
  });
  afterEach(() => cleanup());

  it("extracts within the cap or refuses with OL_BAD_ARCHIVE / OL_ARCHIVE_TOO_LARGE, writing only in dest", async () => {
    // Names climb at most 5 levels ("..") and absolute ones point into root, so even a reader
    // that failed to refuse them could only write inside this test's own temp dir.
    const segment = fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom("a", "b", "c.js", "ü", "d") },
      { weight: 2, arbitrary: fc.constantFrom("..", ".", "") },
      { weight: 1, arbitrary: fc.constant("x".repeat(300)) },
    );
    const relName = fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => s.join("/"));
    const name = fc.oneof(
      { weight: 8, arbitrary: relName },
      { weight: 1, arbitrary: relName.map((n) => `${root}/escaped/${n}`) },
    );
    const numericText = fc.oneof(
      fc.nat({ max: 3 * cap }).map(String),
      fc.constantFrom("NaN", "-1", "1e3", "0x10", "", " 5", "007", "9007199254740993", "Infinity"),
      fc.string({ maxLength: 6 }),
    );
    const sizeField = fc.oneof(
      { weight: 16, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 12, maxLength: 12 }).map(Buffer.from) },
      { weight: 1, arbitrary: fc.nat({ max: 3 * cap }) },
      { weight: 1, arbitrary: numericText.map((t) => t.padEnd(12, "\0").slice(0, 12)) },
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.boolean(), fc.uint8Array({ minLength: 11, maxLength: 11 }))
          .map(([neg, rest]) => Buffer.concat([Buffer.from([neg ? 0xff : 0x80]), rest])),
      },
    );
    const paxRecord = fc
      .record({
        key: fc.constantFrom("size", "path", "mtime", "comment", "GNU.sparse.major", "uid"),
        value: fc.oneof(numericText, relName),
        lie: fc.oneof(
          { weight: 8, arbitrary: fc.constant(0) },
          { weight: 1, arbitrary: fc.integer({ min: -4, max: 4 }) },
        ),
      })
      .map(({ key, value, lie }) => {
        const good = record(key, value);
        const length = Number.parseInt(good, 10) + lie;
        return `${length}${good.slice(good.indexOf(" "))}`;
      });
    const fileEntry = fc
      .record({
        name,
        type: fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom("0", "\0", "5", "7") },
          { weight: 1, arbitrary: fc.constantFrom("1", "2", "3", "6", "S", "K", "V") },
          {
            weight: 1,
            arbitrary: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
          },
        ),
        data: fc.nat({ max: 2500 }),
        size: sizeField,
        mode: fc.oneof(
          { weight: 6, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.uint8Array({ minLength: 8, maxLength: 8 }).map(Buffer.from) },
        ),
        badChecksum: fc.oneof(
          { weight: 9, arbitrary: fc.constant(false) },
          { weight: 1, arbitrary: fc.constant(true) },
        ),
      })
      .map(({ name, type, data, size, mode, badChecksum }) =>
        raw({
          name,
          type,
          // Directories and links carry no data unless the size field says otherwise.
          data: "51236".includes(type) ? "" : "d".repeat(data),
          ...(size === undefined ? {} : { size }),
          ...(mode === undefined ? {} : { mode }),
          ...(badChecksum ? { checksum: Buffer.from("1234567\0") } : {}),
        }),
      );
    const paxEntry = fc
      .tuple(fc.array(paxRecord, { maxLength: 4 }), fc.constantFrom("x", "x", "g"))
      .map(([records, type]) => pax(records.join(""), type));
    const longNameEntry = fc
      .tuple(name, fc.constantFrom("", "\0", "\0\0junk"), fc.constantFrom("L", "K"))
      .map(([n, tail, type]) => raw({ name: "././@LongLink", type, data: `${n}${tail}` }));
    // Well-formed entries too, so that the adversarial ones also land deep in an archive,
    // after files were written and near the cap.
    const goodName = fc
      .array(fc.constantFrom("a", "b", "c.js", "ü", "d"), { minLength: 1, maxLength: 3 })
      .map((s) => s.join("/"));
    const goodEntry = fc
      .tuple(goodName, fc.nat({ max: 2500 }), fc.constantFrom("plain", "dir", "pax", "long"))
      .map(([n, length, how]) => {
        const data = "g".repeat(length);
        if (how === "dir") return raw({ name: `${n}/`, type: "5" });
        if (how === "plain") return raw({ name: n, data });
        if (how === "long")
          return Buffer.concat([
            raw({ name: "././@LongLink", type: "L", data: `${n}\0` }),
            raw({ name: "x", data }),
          ]);
        const records = record("path", n) + record("size", String(length));
        return Buffer.concat([pax(records), raw({ name: "x", size: 0, data })]);
      });
    const tarball = fc
      .tuple(
        fc.array(
          fc.oneof(
            { weight: 12, arbitrary: goodEntry },
            { weight: 3, arbitrary: fileEntry },
            { weight: 1, arbitrary: paxEntry },
            { weight: 1, arbitrary: longNameEntry },
          ),
          { maxLength: 8 },
        ),
        fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }),
      )
      .map(([entries, cut]) => {
        const tar = Buffer.concat([...entries, Buffer.alloc(1024)]);
        return gzipSync(cut === null ? tar : tar.subarray(0, cut % (tar.length + 1)));
      });

    let run = 0;
    await fc.assert(
      fc.asyncProperty(tarball, fc.nat({ max: 40 }), async (gz, gzCut) => {
        // Deep enough that five ".." from dest still land inside this run's own dir.
        const box = join(root, "runs", String(run++));
        const dest = join(box, "1/2/3/4/5/dest");
        await mkdir(dest, { recursive: true });
        // Now and then the gzip stream itself is cut short.
        const input = gzCut === 0 ? gz.subarray(0, Math.floor(gz.length / 2)) : gz;
        const outcome = await extractTarGz(chunks(input, 333), dest, fuzzLimits).then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
        if ("error" in outcome) {
          const error = outcome.error as { code?: string };
          if (!(error instanceof BadArchiveError || error instanceof ArchiveTooLargeError))
            throw error;
          expect(["OL_BAD_ARCHIVE", "OL_ARCHIVE_TOO_LARGE"]).toContain(error.code);
        }
        const written = await filesUnder(dest);
        expect(sum(written)).toBeLessThanOrEqual(cap);
        if ("result" in outcome) expect(outcome.result.bytes).toBe(sum(written));
        // Nothing beside dest: every file in the run's box is inside dest, nothing in root else.
        const inBox = await filesUnder(box);
        expect([...inBox.keys()].every((p) => p.startsWith("1/2/3/4/5/dest/"))).toBe(true);
        expect(await readdir(root)).toEqual(["runs"]);
        await rm(box, { recursive: true, force: true });
      }),
      { numRuns: 400 },
    );
  });
});
