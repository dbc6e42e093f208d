/**
 * Every failure the worker reports has one class and a stable `OL_*` code. Codes are documented
 * in docs/errors.md (a test keeps the two in step) and never reused once retired.
 *
 * Classes are branded with `Symbol.for` so that `instanceof` holds even when two copies of this
 * package end up in one process (a platform importing a backend built against another copy).
 */

const brand = Symbol.for("@openlambda/error");

export interface OlErrorOptions {
  readonly cause?: unknown;
}

export abstract class OlError extends Error {
  abstract readonly code: `OL_${string}`;
  /** The HTTP status a trigger answers with when this error reaches a client. */
  readonly status: number = 500;

  constructor(message: string, options?: OlErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    Object.defineProperty(this, brand, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== "object" || value === null || !(brand in value)) return false;
    // On OlError itself any branded error matches; on a subclass the code must match too.
    // biome-ignore lint/complexity/noThisInStatic: `this` is the subclass `instanceof` asked about
    const code = (this as { readonly CODE?: string }).CODE;
    if (code === undefined) return true;
    return (value as { code?: unknown }).code === code;
  }
}

/** Declares an error class with a fixed code and HTTP status. */
function define<const C extends `OL_${string}`>(code: C, status: number, summary: string) {
  const cls = class extends OlError {
    static readonly CODE: C = code;
    static readonly SUMMARY = summary;
    readonly code: C = code;
    override readonly status = status;
  };
  registry.set(code, { code, status, summary });
  return cls;
}

export interface ErrorCodeInfo {
  readonly code: string;
  readonly status: number;
  readonly summary: string;
}

const registry = new Map<string, ErrorCodeInfo>();

/** Every code declared by this package, for docs and tests. */
export function errorCodes(): readonly ErrorCodeInfo[] {
  return [...registry.values()];
}

/** Lets other packages declare their errors through the same registry and branding. */
export const defineOlError = define;

export function isOlError(value: unknown): value is OlError {
  return value instanceof OlError;
}

// --- sandbox layer -------------------------------------------------------------------------

export class SandboxDeadError extends define(
  "OL_SANDBOX_DEAD",
  502,
  "The sandbox was destroyed (or died) and cannot be used any more.",
) {}

export class SandboxCreateError extends define(
  "OL_SANDBOX_CREATE_FAILED",
  503,
  "The backend could not create a sandbox; the cause says which step failed.",
) {}

export class SandboxGuestStartError extends define(
  "OL_SANDBOX_GUEST_START",
  502,
  "The sandbox was made but its guest did not start listening on /host/ol.sock in time.",
) {}

export class GuestSocketUnsafeError extends define(
  "OL_GUEST_SOCKET_UNSAFE",
  502,
  "The guest's /host/ol.sock is not a socket it made (a symbolic link, a file): the worker refuses to connect through it.",
) {}

export class SandboxPauseError extends define(
  "OL_SANDBOX_PAUSE_FAILED",
  500,
  "Pausing (freezing) a sandbox failed; the sandbox was destroyed.",
) {}

export class SandboxUnpauseError extends define(
  "OL_SANDBOX_UNPAUSE_FAILED",
  502,
  "Unpausing (thawing) a sandbox failed; the sandbox was destroyed.",
) {}

export class SandboxUnsupportedError extends define(
  "OL_SANDBOX_UNSUPPORTED",
  501,
  "The backend does not support this operation (for example fork on Docker).",
) {}

export class SandboxOomError extends define(
  "OL_SANDBOX_OOM",
  502,
  "The guest was killed because it went past the sandbox's memory limit.",
) {}

export class InvalidSpecError extends define(
  "OL_INVALID_SPEC",
  400,
  "A sandbox spec is invalid; the message names the field.",
) {}

export class BackendUnavailableError extends define(
  "OL_BACKEND_UNAVAILABLE",
  503,
  "The backend cannot run on this host (not root, no cgroups, not Linux, no Docker engine); the message says what is missing.",
) {}

export class UnknownBackendError extends define(
  "OL_UNKNOWN_BACKEND",
  400,
  "No sandbox backend has the requested name.",
) {}

export class BackendError extends define(
  "OL_BACKEND_ERROR",
  502,
  "The backend's engine or kernel interface returned an error; the message carries its text.",
) {}
