export {
  BASE_MANIFEST,
  type BaseRootfs,
  type BuildBaseOptions,
  buildBaseRootfs,
} from "./base-rootfs.js";
export type { CgroupStats, FreezerState, SandboxCgroup } from "./cgroup/driver.js";
export { BaseBuildError, SOCK_ERROR_CODES, SockHelperMissingError } from "./errors.js";
export {
  type ForceCleanupOptions,
  type ForceCleanupReport,
  forceCleanup,
} from "./force-cleanup.js";
export {
  SOCK_CAPABILITIES,
  type SockBackendOptions,
  type SockFeatures,
  sockBackend,
  ZYGOTE_COMMAND,
  ZYGOTE_PACKAGE,
} from "./sock-backend.js";
export { SockSandbox } from "./sock-sandbox.js";

/** The backend's name, as chosen by `"sandbox": "sock"` in a worker's config. */
export const SOCK_BACKEND_NAME = "sock";
