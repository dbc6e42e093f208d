/**
 * What HTTP/1.1 lets a status line and a header carry (RFC 9110 §5, RFC 9112 §4). Shared by the
 * worker, which checks every answer a guest sends, and the Node guest, which refuses to send a
 * lambda's bad answer; it imports nothing, so the guest bundle can take it in.
 */

/**
 * Headers about one connection and its framing (RFC 9110 §7.6.1): whoever sends an answer
 * frames it for its own connection, so none of them passes from the guest's answer on.
 */
export const CONNECTION_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "trailer",
  "te",
]);

/** A header name: an RFC 9110 token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A char no header value (or reason phrase) may hold: controls but HTAB, DEL, past Latin-1. */
const NOT_FIELD_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

/** Whether `status` can be a final answer: 1xx are interim answers, 600 and up do not exist. */
export function isFinalStatus(status: number): boolean {
  return Number.isInteger(status) && status >= 200 && status <= 599;
}

export function isHeaderName(name: string): boolean {
  return TOKEN.test(name);
}

/**
 * Whether `value` is an RFC 9110 field-value: no CR, LF, NUL or other control but HTAB, nothing
 * past Latin-1, and no whitespace at either end (a parser would strip it).
 */
export function isFieldValue(value: string): boolean {
  if (NOT_FIELD_CHAR.test(value)) return false;
  const n = value.length;
  if (n === 0) return true;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  return first !== 0x20 && first !== 0x09 && last !== 0x20 && last !== 0x09;
}

/** Why `value` is not a field-value, without quoting it (it may be huge or hostile). */
export function fieldValueProblem(value: string): string {
  const bad = NOT_FIELD_CHAR.exec(value);
  if (bad !== null) {
    const code = bad[0].codePointAt(0) ?? 0;
    return `holds the character U+${code.toString(16).toUpperCase().padStart(4, "0")}${charName(code)} at offset ${bad.index}`;
  }
  return "starts or ends with whitespace";
}

function charName(code: number): string {
  if (code === 0x0d) return " (CR)";
  if (code === 0x0a) return " (LF)";
  if (code === 0) return " (NUL)";
  return "";
}

/** A name or other short text for a message: quoted, escaped, cut at 64 chars. */
export function quoteShort(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}
