import { defineOlError } from "@openlambda/sandbox-core";

/** The native helper is not there (not built, or not linux-x64): SOCK cannot make sandboxes. */
export class SockHelperMissingError extends defineOlError(
  "OL_SOCK_HELPER_MISSING",
  503,
  "The SOCK backend's native helper (ol-sock-helper) or reaper (ol-sock-reaper) is missing or was not built for this platform (only linux-x64 is shipped); the message says which and how to build it.",
) {}

/** Assembling a base root filesystem from the host failed. */
export class BaseBuildError extends defineOlError(
  "OL_SOCK_BASE_BUILD",
  500,
  "Building the SOCK base root filesystem from the host failed; the message names the step and path.",
) {}

/** The codes this package declares; a test keeps them documented in docs/errors.md. */
export const SOCK_ERROR_CODES = [SockHelperMissingError.CODE, BaseBuildError.CODE] as const;
