import { createHash } from "node:crypto";
import { mkdir, open } from "node:fs/promises";
import { join, posix } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { ArchiveTooLargeError, BadArchiveError } from "../errors.js";

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

/**
 * Extracts a gzip'd tar into `dest` (an empty directory the caller made and removes on failure).
 * Only regular files and directories are accepted: paths escaping the root, absolute paths,
 * links, devices and FIFOs are refused with `OL_BAD_ARCHIVE`, oversize archives with
 * `OL_ARCHIVE_TOO_LARGE`. Files are written world-readable (the guest's uid is not ours).
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
  let bytes = 0;
  let pendingPath: string | undefined;
  let pendingSize: number | undefined;
  const made = new Set<string>([""]);

  try {
    for (;;) {
      const header = await reader.read(BLOCK);
      if (header === undefined)
        throw new BadArchiveError("archive: ends before the end-of-archive marker");
      if (header.every((b) => b === 0)) break;
      verifyChecksum(header);
      const type = String.fromCharCode(header[156] ?? 0);
      let size: number = pendingSize ?? parseOctal(header.subarray(124, 136), "size");
      const name = pendingPath ?? headerPath(header);
      pendingPath = undefined;
      pendingSize = undefined;

      if (type === "x" || type === "g" || type === "L") {
        if (size > 1024 * 1024) throw new BadArchiveError("archive: extended header over 1 MiB");
        const data = await reader.readPadded(size);
        if (type === "x") {
          const pax = parsePax(data);
          pendingPath = pax.path;
          pendingSize = pax.size;
        } else if (type === "L") {
          pendingPath = data.toString("utf8").replace(/\0.*$/s, "");
        }
        continue;
      }

      if (++entries > limits.maxEntries) {
        throw new ArchiveTooLargeError(`archive: more than ${limits.maxEntries} entries`);
      }
      const rel = safePath(name);
      if (type === "5") {
        if (rel !== "") await makeDir(dest, rel, made);
        await reader.skipPadded(size);
        continue;
      }
      if (type !== "0" && type !== "\0" && type !== "7") {
        const kinds: Record<string, string> = {
          "1": "a hard link",
          "2": "a symbolic link",
          "3": "a character device",
          "4": "a block device",
          "6": "a FIFO",
        };
        throw new BadArchiveError(
          `archive: ${name} is ${kinds[type] ?? `an entry of type '${type}'`}; only files and directories are allowed`,
        );
      }
      if (rel === "") throw new BadArchiveError(`archive: a file entry has an empty path`);
      bytes += size;
      if (bytes > limits.maxExtractedBytes) {
        throw new ArchiveTooLargeError(
          `archive: extracted size over ${limits.maxExtractedBytes} bytes`,
        );
      }
      await makeDir(dest, posix.dirname(rel) === "." ? "" : posix.dirname(rel), made);
      const mode = parseOctal(header.subarray(100, 108), "mode") & 0o111 ? 0o755 : 0o644;
      const handle = await open(join(dest, rel), "wx", mode);
      const fileSize = size;
      try {
        while (size > 0) {
          const chunk = await reader.read(Math.min(size, 64 * 1024), true);
          if (chunk === undefined) throw new BadArchiveError(`archive: ${name} is truncated`);
          await handle.write(chunk);
          size -= chunk.length;
        }
      } finally {
        await handle.close();
      }
      await reader.skip(padding(fileSize));
      files++;
    }
    // Drain the rest so the hash covers the whole file and trailing garbage is still gzip.
    while ((await reader.read(64 * 1024, true)) !== undefined) {}
  } catch (error) {
    gunzip.destroy();
    hashed.destroy();
    if (error instanceof BadArchiveError || error instanceof ArchiveTooLargeError) throw error;
    if ((error as NodeJS.ErrnoException).code === "EEXIST") {
      throw new BadArchiveError(`archive: an entry appears twice or clashes with a directory`, {
        cause: error,
      });
    }
    if ((error as NodeJS.ErrnoException).code?.startsWith("Z_")) {
      throw new BadArchiveError(`archive: not a valid gzip stream (${(error as Error).message})`, {
        cause: error,
      });
    }
    throw error;
  }
  return { files, bytes, sha256: hash.digest("hex") };
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
  const magic = header.subarray(257, 263).toString("latin1");
  const prefix = magic.startsWith("ustar") ? cString(header.subarray(345, 500)) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.subarray(0, end === -1 ? buf.length : end).toString("utf8");
}

function parseOctal(buf: Buffer, field: string): number {
  // Base-256 (GNU) for big sizes: high bit set on the first byte.
  if (((buf[0] ?? 0) & 0x80) !== 0) {
    let value = 0;
    for (let i = 1; i < buf.length; i++) value = value * 256 + (buf[i] ?? 0);
    return value;
  }
  const text = cString(buf).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text))
    throw new BadArchiveError(`archive: bad ${field} field in a tar header`);
  return Number.parseInt(text, 8);
}

function verifyChecksum(header: Buffer): void {
  const stored = parseOctal(header.subarray(148, 156), "checksum");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] ?? 0);
  if (sum !== stored)
    throw new BadArchiveError("archive: not a tar file (header checksum mismatch)");
}

function parsePax(data: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let text = data.toString("utf8");
  while (text.length > 0) {
    const space = text.indexOf(" ");
    const len = Number.parseInt(text.slice(0, space), 10);
    if (!(len > 0) || space < 0) break;
    const record = text.slice(space + 1, len - 1);
    const eq = record.indexOf("=");
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === "path") out.path = value;
    if (key === "size") out.size = Number.parseInt(value, 10);
    text = text.slice(len);
  }
  return out;
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

  async skipPadded(size: number): Promise<void> {
    await this.skip(size + padding(size));
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
