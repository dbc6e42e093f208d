import { BadArchiveError } from "../errors.js";
import { parseDecimal, quote } from "./tar-fields.js";

/** What an extended header says about the entry after it (only what the reader honours). */
export interface PaxOverrides {
  path?: string;
  size?: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const SPACE = 0x20;
const NEWLINE = 0x0a;

/**
 * Parses a PAX extended header: records `"<length> <key>=<value>\n"` where length counts the
 * record's bytes, itself included. Every record must be exactly that; a length that lies, a
 * missing `=` or newline, bytes after the last record or text that is not UTF-8 is refused.
 * `global` is a `g` header: it may not set what the reader honours per entry, since applying
 * it to every later entry is what other readers do and ignoring it would extract differently.
 */
export function parsePax(data: Uint8Array, global: boolean): PaxOverrides {
  const out: PaxOverrides = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(SPACE, pos);
    if (space < 0 || space - pos > 8) throw bad("a record has no length");
    const length = parseDecimal(ascii(data.subarray(pos, space)), "a PAX record's length");
    const end = pos + length;
    if (length <= space - pos + 1 || end > data.length || data[end - 1] !== NEWLINE) {
      throw bad(`a record's length (${length}) does not match the record`);
    }
    const record = decode(data.subarray(space + 1, end - 1));
    const eq = record.indexOf("=");
    if (eq <= 0) throw bad(`a record has no key=value: ${quote(record)}`);
    apply(out, record.slice(0, eq), record.slice(eq + 1), global);
    pos = end;
  }
  return out;
}

function apply(out: PaxOverrides, key: string, value: string, global: boolean): void {
  if (key.startsWith("GNU.sparse.")) throw bad("sparse files are not supported");
  if (key !== "path" && key !== "size") return;
  if (global) throw bad(`a global header sets ${key}; only per-entry headers may`);
  if (key === "path") {
    if (value === "") throw bad("path is empty");
    out.path = value;
  } else {
    out.size = parseDecimal(value, "PAX size");
  }
}

function decode(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw bad("a record is not UTF-8");
  }
}

function ascii(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("latin1");
}

function bad(why: string): BadArchiveError {
  return new BadArchiveError(`archive: bad PAX extended header: ${why}`);
}
