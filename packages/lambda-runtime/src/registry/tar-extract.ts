import { createHash } from "node:crypto";
import { type FileHandle, mkdir, open } from "node:fs/promises";
import { join, posix } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { ArchiveTooLargeError, BadArchiveError } from "../errors.js";
import { type PaxOverrides, parsePax } from "./pax-records.js";
import { parseNumericField, quote } from "./tar-fields.js";

export interface ExtractLimits {
  /** Largest total size of the files in the archive, bytes. */
  readonly maxExtractedBytes: number;
  /** Most entries (files and directories). */
  readonly maxEntries: number;
}

export interface ExtractResult {
  readonly files: number;
  readonly bytes: number;
  /** sha256 of the compressed archive. */
  readonly sha256: string;
}

const BLOCK = 512;
/** Largest one extended header (PAX record set, GNU long name) may be. */
const META_MAX_BYTES = 1024 * 1024;
/** Largest all extended headers of an archive may be together: they are read into memory. */
const META_TOTAL_MAX_BYTES = 8 * 1024 * 1024;
/** Most extended headers in a row before the entry they describe. */
const META_RUN_MAX = 8;
/** Most data after the end-of-archive marker (tar pads to its record size, 10 KiB by default). */
const TRAILER_MAX_BYTES = 1024 * 1024;
const META_TYPES = new Set(["x", "g", "L", "K"]);
const KINDS: Readonly<Record<string, string>> = {
  "1": "a hard link",
  "2": "a symbolic link",
  "3": "a character device",
  "4": "a block device",
  "6": "a FIFO",
};

/**
 * Extracts a gzip'd tar into `dest` (an empty directory the caller made and removes on failure).
 * Only regular files and directories are accepted: paths escaping the root, absolute paths,
 * links, devices and FIFOs are refused with `OL_BAD_ARCHIVE`, and so is every numeric field
 * (octal, base-256, PAX `size`, GNU long names) that is not exactly a valid number. An entry
 * whose size would take the bytes written past `maxExtractedBytes` is refused with
 * `OL_ARCHIVE_TOO_LARGE` before any of it is written, so no more than the cap ever reaches the
 * disk. Files are written world-readable (the guest's uid is not ours).
 */
export async function extractTarGz(
  source: AsyncIterable<Uint8Array>,
  dest: string,
  limits: ExtractLimits,
): Promise<ExtractResult> {
  const hash = createHash("sha256");
  const gunzip = createGunzip();
  const hashed = Readable.from(
    (async function* () {
      for await (const chunk of source) {
        hash.update(chunk);
        yield chunk;
      }
    })(),
  );
  hashed.on("error", (error) => gunzip.destroy(error));
  hashed.pipe(gunzip);
  const reader = new BlockReader(gunzip);
  let files = 0;
  let entries = 0;
  /** Bytes actually written into `dest`: what the cap counts. */
  let written = 0;
  let metaBytes = 0;
  let metaRun = 0;
  let pax: PaxOverrides = {};
  let longName: string | undefined;
  const made = new Set<string>([""]);

  try {
    for (;;) {
      const header = await reader.read(BLOCK);
      if (header === undefined)
        throw new BadArchiveError("archive: ends before the end-of-archive marker");
      if (header.every((b) => b === 0)) {
        if (metaRun > 0) throw new BadArchiveError("archive: an extended header has no entry");
        break;
      }
      verifyChecksum(header);
      const type = String.fromCharCode(header[156] ?? 0);
      const headerSize = parseNumericField(header.subarray(124, 136), "size");

      if (META_TYPES.has(type)) {
        if (++metaRun > META_RUN_MAX)
          throw new BadArchiveError(`archive: more than ${META_RUN_MAX} extended headers in a row`);
        if (headerSize > META_MAX_BYTES)
          throw new BadArchiveError("archive: an extended header is over 1 MiB");
        metaBytes += headerSize;
        if (metaBytes > META_TOTAL_MAX_BYTES)
          throw new BadArchiveError("archive: extended headers are over 8 MiB in total");
        const data = await reader.readPadded(headerSize);
        if (type === "x") pax = { ...pax, ...parsePax(data, false) };
        else if (type === "g") parsePax(data, true);
        else if (type === "L") longName = gnuLongName(data);
        // "K" (a long link target) is checked and dropped: the link entry after it is refused.
        else gnuLongName(data);
        continue;
      }

      const size = pax.size ?? headerSize;
      const name = pax.path ?? longName ?? headerPath(header);
      pax = {};
      longName = undefined;
      metaRun = 0;

      if (++entries > limits.maxEntries) {
        throw new ArchiveTooLargeError(`archive: more than ${limits.maxEntries} entries`);
      }
      const rel = safePath(name);
      const regular = type === "0" || type === "\0" || type === "7";
      // Old (v7) tars mark a directory only by the slash that ends its name.
      if (type === "5" || (regular && type !== "7" && name.endsWith("/"))) {
        if (size !== 0)
          throw new BadArchiveError(`archive: directory ${name} claims ${size} bytes of data`);
        if (rel !== "") await makeDir(dest, rel, made);
        continue;
      }
      if (!regular) {
        throw new BadArchiveError(
          `archive: ${name} is ${KINDS[type] ?? `an entry of type ${quote(type)}`}; only files and directories are allowed`,
        );
      }
      if (rel === "") throw new BadArchiveError("archive: a file entry has an empty path");
      if (size > limits.maxExtractedBytes - written) {
        throw new ArchiveTooLargeError(
          `archive: extracted size over ${limits.maxExtractedBytes} bytes (${name} is ${size} bytes)`,
        );
      }
      await makeDir(dest, posix.dirname(rel) === "." ? "" : posix.dirname(rel), made);
      const mode = parseNumericField(header.subarray(100, 108), "mode") & 0o111 ? 0o755 : 0o644;
      const handle = await open(join(dest, rel), "wx", mode);
      try {
        for (let left = size; left > 0; ) {
          const chunk = await reader.read(Math.min(left, 64 * 1024), true);
          if (chunk === undefined) throw new BadArchiveError(`archive: ${name} is truncated`);
          await writeAll(handle, chunk);
          written += chunk.length;
          left -= chunk.length;
        }
      } finally {
        await handle.close();
      }
      await reader.skip(padding(size));
      files++;
    }
    // Drain the rest so the hash covers the whole file and trailing garbage is still gzip; a
    // bound, or a small upload could make the worker inflate gigabytes of padding.
    let trailer = 0;
    for (;;) {
      const chunk = await reader.read(64 * 1024, true);
      if (chunk === undefined) break;
      trailer += chunk.length;
      if (trailer > TRAILER_MAX_BYTES)
        throw new BadArchiveError("archive: over 1 MiB of data after the end-of-archive marker");
    }
  } catch (error) {
    gunzip.destroy();
    hashed.destroy();
    throw asArchiveError(error);
  }
  return { files, bytes: written, sha256: hash.digest("hex") };
}

/** File-system refusals caused by the archive's own paths are the archive's fault. */
function asArchiveError(error: unknown): unknown {
  if (error instanceof BadArchiveError || error instanceof ArchiveTooLargeError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "EEXIST" || code === "ENOTDIR" || code === "EISDIR") {
    return new BadArchiveError("archive: an entry appears twice or clashes with a directory", {
      cause: error,
    });
  }
  if (code === "ENAMETOOLONG") {
    return new BadArchiveError("archive: an entry's path is too long", { cause: error });
  }
  if (code?.startsWith("Z_")) {
    return new BadArchiveError(`archive: not a valid gzip stream (${(error as Error).message})`, {
      cause: error,
    });
  }
  return error;
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset);
    offset += bytesWritten;
  }
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

async function makeDir(dest: string, rel: string, made: Set<string>): Promise<void> {
  if (made.has(rel)) return;
  await mkdir(join(dest, rel), { recursive: true, mode: 0o755 });
  let cur = rel;
  while (cur !== "." && cur !== "" && !made.has(cur)) {
    made.add(cur);
    cur = posix.dirname(cur);
  }
}

function headerPath(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  // Only POSIX ustar has a prefix field; GNU's "ustar  " keeps times and offsets there.
  const posixUstar = header.subarray(257, 263).toString("latin1") === "ustar\0";
  const prefix = posixUstar ? cString(header.subarray(345, 500)) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.subarray(0, end === -1 ? buf.length : end).toString("utf8");
}

/** A GNU long name: the name, then NULs only. */
function gnuLongName(data: Buffer): string {
  const end = data.indexOf(0);
  if (end !== -1 && data.subarray(end).some((b) => b !== 0))
    throw new BadArchiveError("archive: a GNU long name has bytes after its end");
  const name = cString(data);
  if (name === "") throw new BadArchiveError("archive: a GNU long name is empty");
  return name;
}

function verifyChecksum(header: Buffer): void {
  const stored = parseNumericField(header.subarray(148, 156), "checksum");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] ?? 0);
  if (sum !== stored)
    throw new BadArchiveError("archive: not a tar file (header checksum mismatch)");
}

/** Normalises an entry's path, refusing anything that could land outside the root. */
export function safePath(name: string): string {
  if (name.includes("\0")) throw new BadArchiveError("archive: an entry's path contains NUL");
  if (name.startsWith("/")) throw new BadArchiveError(`archive: ${name} is an absolute path`);
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw new BadArchiveError(`archive: ${name} escapes the archive's root`);
    parts.push(part);
  }
  return parts.join("/");
}

/** Reads exact byte counts from a stream of chunks. */
class BlockReader {
  readonly #iterator: AsyncIterator<Buffer>;
  #buffer: Buffer = Buffer.alloc(0);
  #done = false;

  constructor(stream: AsyncIterable<Buffer>) {
    this.#iterator = stream[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes, or up to `n` when `partial`; undefined at the end of the stream. */
  async read(n: number, partial = false): Promise<Buffer | undefined> {
    while (this.#buffer.length < (partial ? 1 : n) && !this.#done) {
      const next = await this.#iterator.next();
      if (next.done) this.#done = true;
      else
        this.#buffer =
          this.#buffer.length === 0 ? next.value : Buffer.concat([this.#buffer, next.value]);
    }
    if (this.#buffer.length === 0 || (!partial && this.#buffer.length < n)) return undefined;
    const take = Math.min(n, this.#buffer.length);
    const out = this.#buffer.subarray(0, take);
    this.#buffer = this.#buffer.subarray(take);
    return out;
  }

  async readPadded(size: number): Promise<Buffer> {
    const data = size === 0 ? Buffer.alloc(0) : await this.read(size);
    if (data === undefined) throw new BadArchiveError("archive: truncated");
    await this.skip(padding(size));
    return Buffer.from(data);
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      const chunk = await this.read(Math.min(left, 64 * 1024), true);
      if (chunk === undefined) throw new BadArchiveError("archive: truncated");
      left -= chunk.length;
    }
  }
}
