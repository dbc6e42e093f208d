import { defineOlError } from "@openlambda/sandbox-core";

/**
 * Errors only the Docker backend raises. Engine failures use sandbox-core's `BackendError`
 * (carrying the engine's message) and a missing engine `BackendUnavailableError`; these cover
 * what neither says. Every code here has a row in docs/errors.md (a unit test checks).
 */
export class DockerBaseImageError extends defineOlError(
  "OL_DOCKER_BASE_IMAGE",
  503,
  "The Docker backend could not get its base image: neither an image nor a base directory was given, or importing the base directory into the engine failed.",
) {}

/** The codes declared above, for the docs test. */
export const DOCKER_ERROR_CODES: readonly string[] = [DockerBaseImageError.CODE];
