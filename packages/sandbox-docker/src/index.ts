export { MAX_API_VERSION, MIN_API_VERSION } from "./api-version.js";
export {
  BASE_IMAGE_REPO,
  type BaseImageResult,
  type BaseImageSource,
  baseImageTag,
} from "./base-image.js";
export {
  DOCKER_BACKEND_NAME,
  DOCKER_CAPABILITIES,
  type DockerBackend,
  type DockerBackendOptions,
  type DockerReadyInfo,
  dockerBackend,
} from "./docker-backend.js";
export { DEFAULT_DOCKER_SOCKET, engineSocketPath } from "./engine-address.js";
export type { EngineVersion } from "./engine-client.js";
export { DOCKER_ERROR_CODES, DockerBaseImageError } from "./errors.js";
export {
  type ForceCleanupOptions,
  type ForceCleanupResult,
  forceCleanup,
} from "./force-cleanup.js";
export {
  LABEL_BASE_HASH,
  LABEL_INSTANCE,
  LABEL_MANAGED,
  LABEL_OWNED_SCRATCH,
  LABEL_SANDBOX,
  LABEL_WORKER,
} from "./labels.js";
