import { BadArchiveError } from "../errors.js";

/**
 * Strict readers for the numbers in a tar archive. A number that is not exactly what the format
 * allows is refused rather than read as NaN, 0 or a rounded value: a lenient reader is how a
 * size check gets skipped (NaN compares false with everything) or a size gets wrapped.
 */

const SPACE = 0x20;
const NUL = 0x00;

/**
 * A numeric field of a tar header (size, mode, checksum): octal text, optionally led by spaces
 * and ended by NULs or spaces (nothing else after the digits), or GNU base-256 (first byte's
 * high bit set). Negative base-256 values and values past Number.MAX_SAFE_INTEGER are refused.
 */
export function parseNumericField(field: Uint8Array, what: string): number {
  const first = field[0] ?? 0;
  if ((first & 0x80) !== 0) return parseBase256(field, what);
  let i = 0;
  while (i < field.length && field[i] === SPACE) i++;
  const start = i;
  while (i < field.length && isOctalDigit(field[i] ?? 0)) i++;
  const digits = Buffer.from(field.subarray(start, i)).toString("latin1");
  for (; i < field.length; i++) {
    const b = field[i];
    if (b !== NUL && b !== SPACE) throw bad(what, "has a character that is not an octal digit");
  }
  if (digits === "") throw bad(what, "is empty");
  const value = Number.parseInt(digits, 8);
  if (!Number.isSafeInteger(value)) throw bad(what, "is too large");
  return value;
}

function parseBase256(field: Uint8Array, what: string): number {
  const first = field[0] ?? 0;
  // GNU's two's complement: bit 6 of the first byte is the sign.
  if ((first & 0x40) !== 0) throw bad(what, "is negative (base-256)");
  let value = first & 0x3f;
  for (let i = 1; i < field.length; i++) {
    const b = field[i] ?? 0;
    if (value > (Number.MAX_SAFE_INTEGER - b) / 256) throw bad(what, "is too large (base-256)");
    value = value * 256 + b;
  }
  return value;
}

/**
 * A decimal number from a PAX record or a record's length: ASCII digits only, no sign, no
 * leading zero, no spaces, no exponent, at most Number.MAX_SAFE_INTEGER.
 */
export function parseDecimal(text: string, what: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(text)) {
    throw new BadArchiveError(`archive: ${what} ${quote(text)} is not a decimal number`);
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    throw new BadArchiveError(`archive: ${what} ${quote(text)} is too large`);
  }
  return value;
}

function isOctalDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x37;
}

function bad(what: string, why: string): BadArchiveError {
  return new BadArchiveError(`archive: the ${what} field of a tar header ${why}`);
}

/** At most 40 characters of untrusted text, JSON-quoted so control bytes stay visible. */
export function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}
