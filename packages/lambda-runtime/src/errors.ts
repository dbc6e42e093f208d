import { defineOlError } from "@openlambda/sandbox-core";

export class LambdaNotFoundError extends defineOlError(
  "OL_LAMBDA_NOT_FOUND",
  404,
  "No lambda of that name is in the registry.",
) {}

export class InvalidLambdaNameError extends defineOlError(
  "OL_INVALID_LAMBDA_NAME",
  400,
  "A lambda name must match ^[A-Za-z0-9._-]+$ and must not be . or ..",
) {}

export class MethodNotAllowedError extends defineOlError(
  "OL_METHOD_NOT_ALLOWED",
  405,
  "The lambda's ol.yaml does not allow this HTTP method; the body is OpenLambda's text.",
) {}

export class QueueFullError extends defineOlError(
  "OL_QUEUE_FULL",
  429,
  "The lambda's queue is full; retry later or raise its queue size.",
) {}

export class LambdaTimeoutError extends defineOlError(
  "OL_LAMBDA_TIMEOUT",
  502,
  "The invocation ran past the lambda's runtime limit; its sandbox was replaced.",
) {}

export class LambdaCrashedError extends defineOlError(
  "OL_LAMBDA_CRASHED",
  502,
  "The lambda's sandbox died during the invocation (crash, kill, out of memory); the next call gets a fresh one.",
) {}

export class LambdaLoadError extends defineOlError(
  "OL_LAMBDA_LOAD_FAILED",
  500,
  "The lambda's code could not be loaded: no entry file, a syntax error, or an import that failed.",
) {}

export class BadArchiveError extends defineOlError(
  "OL_BAD_ARCHIVE",
  400,
  "An uploaded archive was refused: not a gzip tar, a path escaping the root, a link or device, or no entry file. Nothing was changed.",
) {}

export class ArchiveTooLargeError extends defineOlError(
  "OL_ARCHIVE_TOO_LARGE",
  413,
  "An uploaded archive is larger than the registry allows (compressed or extracted). Nothing was changed.",
) {}

export class InvalidLambdaConfigError extends defineOlError(
  "OL_INVALID_LAMBDA_CONFIG",
  400,
  "A lambda's ol.yaml is invalid, or asks for a limit over the worker's maximum; the message names the key.",
) {}

export class InvalidWorkerConfigError extends defineOlError(
  "OL_INVALID_CONFIG",
  400,
  "The worker's config.json (or an -o override) has an unknown key or a bad value; the message names the key.",
) {}

export class MemoryPoolExhaustedError extends defineOlError(
  "OL_MEMORY_POOL_EXHAUSTED",
  503,
  "A sandbox needs more memory than the whole pool (mem_pool_mb) holds, or waited too long for memory.",
) {}

export class WorkerShuttingDownError extends defineOlError(
  "OL_SHUTTING_DOWN",
  503,
  "The worker is stopping and takes no new invocations.",
) {}

export class LambdaBuildError extends defineOlError(
  "OL_LAMBDA_BUILD_FAILED",
  400,
  "A TypeScript lambda did not compile, or its build would read a file outside the lambda; the message gives file, line and the compiler's text or the offending import.",
) {}

export class DependencyInstallError extends defineOlError(
  "OL_DEPENDENCY_INSTALL_FAILED",
  500,
  "Installing a lambda's package.json dependencies or requirements.txt packages failed; the message names the package and carries the package manager's message. Upload a fixed version to retry.",
) {}

export class InvalidRequirementsError extends defineOlError(
  "OL_INVALID_REQUIREMENTS",
  400,
  "A Python lambda's requirements.txt has a line that is not a pin (name==version); the message quotes the line.",
) {}

export class GuestBadResponseError extends defineOlError(
  "OL_GUEST_BAD_RESPONSE",
  502,
  "The lambda's guest answered with something the worker will not pass on: a status outside 200-599, a header name that is not an HTTP token, a header value with CR, LF, NUL or another control character, a Content-Length that is not a number or does not match the body, or bytes that are not HTTP/1.1. The message names the status or header; the sandbox is kept.",
) {}
