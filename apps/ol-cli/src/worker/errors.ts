import { defineOlError } from "@openlambda/sandbox-core";

export class WorkerRunningError extends defineOlError(
  "OL_WORKER_RUNNING",
  409,
  "A worker already runs on this worker directory; stop it with `ol worker down` first.",
) {}

export class WorkerNotRunningError extends defineOlError(
  "OL_WORKER_NOT_RUNNING",
  503,
  "No worker runs on this worker directory (no pid file, or its process is gone).",
) {}

export class WorkerNotInitialisedError extends defineOlError(
  "OL_WORKER_NOT_INITIALISED",
  400,
  "The worker directory has no config.json; run `ol worker init` first.",
) {}

export class WorkerStartError extends defineOlError(
  "OL_WORKER_START_FAILED",
  500,
  "A detached worker did not become ready; its log file says why.",
) {}

export class AdminRequestError extends defineOlError(
  "OL_ADMIN_REQUEST_FAILED",
  502,
  "The worker refused or failed an admin request; the message carries its answer.",
) {}
