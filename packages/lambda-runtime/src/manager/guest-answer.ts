/**
 * The worker's check of a guest's answer. The guest is untrusted: a lambda can speak raw HTTP
 * on its socket, and a third-party backend's transport may parse less strictly than undici, so
 * every status and header is checked here, where the lambda layer receives it, for every trigger.
 */
import { GuestBadResponseError } from "../errors.js";
import {
  CONNECTION_HEADERS,
  fieldValueProblem,
  isFieldValue,
  isFinalStatus,
  isHeaderName,
  quoteShort,
} from "../http-fields.js";

const DIGITS = /^[0-9]{1,15}$/;
const UPPER = /[A-Z]/;

type RawHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * The headers to pass on from a guest's answer, lower-case, without connection headers (nor
 * those its `Connection` names); throws `OL_GUEST_BAD_RESPONSE` naming the bad status or header.
 * One pass, and nothing allocated per valid header.
 */
export function guestAnswerHeaders(
  lambda: string,
  status: number,
  raw: RawHeaders,
): Record<string, string | string[]> {
  if (!isFinalStatus(status)) {
    throw bad(
      lambda,
      `status ${quoteShort(String(status))}; a final HTTP status is an integer from 200 to 599`,
    );
  }
  // No prototype: `__proto__` is a valid header name, and must stay a header.
  const out: Record<string, string | string[]> = Object.create(null);
  let connection: string | string[] | undefined;
  for (const rawName in raw) {
    const value = raw[rawName];
    if (value === undefined) continue;
    if (!isHeaderName(rawName)) {
      throw bad(lambda, `a header name that is not an HTTP token: ${quoteShort(rawName)}`);
    }
    const name = UPPER.test(rawName) ? rawName.toLowerCase() : rawName;
    if (typeof value === "string") {
      if (!isFieldValue(value)) throw badValue(lambda, name, value);
    } else {
      for (const v of value) if (!isFieldValue(v)) throw badValue(lambda, name, v);
    }
    if (CONNECTION_HEADERS.has(name)) {
      if (name === "connection") connection = value;
      continue;
    }
    if (name === "content-length" && (typeof value !== "string" || !DIGITS.test(value))) {
      throw bad(lambda, "a Content-Length that is not one decimal number");
    }
    const before = out[name];
    out[name] = before === undefined ? value : [before, value].flat();
  }
  if (connection !== undefined) {
    for (const listed of [connection].flat().join(",").split(",")) {
      delete out[listed.trim().toLowerCase()];
    }
  }
  return out;
}

/** An answer whose Content-Length is not the length of its body. */
export function lengthMismatch(lambda: string, declared: number, sent: number | string) {
  return bad(lambda, `Content-Length ${declared} with a body of ${sent} bytes`);
}

/** Whether undici refused the guest's bytes as HTTP/1.1 (as opposed to the socket failing). */
export function isGuestProtocolError(error: unknown): error is Error {
  if (!(error instanceof Error)) return false;
  if (error.name === "HTTPParserError") return true;
  const code = (error as { code?: unknown }).code;
  return (
    code === "UND_ERR_RES_CONTENT_LENGTH_MISMATCH" ||
    code === "UND_ERR_HEADERS_OVERFLOW" ||
    (typeof code === "string" && code.startsWith("HPE_"))
  );
}

/** `OL_GUEST_BAD_RESPONSE` for bytes undici would not parse; its reason is undici's own text. */
export function protocolError(lambda: string, cause: Error): GuestBadResponseError {
  return new GuestBadResponseError(
    `lambda ${lambda} answered with something that is not HTTP/1.1 (${cause.message.slice(0, 200)}); the answer was refused`,
    { cause },
  );
}

function badValue(lambda: string, name: string, value: string): GuestBadResponseError {
  return bad(lambda, `header ${quoteShort(name)} whose value ${fieldValueProblem(value)}`);
}

function bad(lambda: string, what: string): GuestBadResponseError {
  return new GuestBadResponseError(
    `lambda ${lambda} answered with ${what}; the answer was refused`,
  );
}
