export { channels, type SandboxEventMessage } from "./diagnostics.js";
export { mountDiskTmpfs } from "./disk-tmpfs.js";
export {
  BackendError,
  BackendUnavailableError,
  defineOlError,
  type ErrorCodeInfo,
  errorCodes,
  GuestSocketUnsafeError,
  InvalidSpecError,
  isOlError,
  OlError,
  type OlErrorOptions,
  SandboxCreateError,
  SandboxDeadError,
  SandboxGuestStartError,
  SandboxOomError,
  SandboxPauseError,
  SandboxUnpauseError,
  SandboxUnsupportedError,
  UnknownBackendError,
} from "./errors.js";
export { SandboxEventHub } from "./event-hub.js";
export {
  type FakeBackendOptions,
  type FakeGuest,
  type FakeGuestContext,
  type FakeGuestFactory,
  fakeBackend,
} from "./fake/fake-backend.js";
export { GuestSocket } from "./guest-socket.js";
export {
  type GuestSocketWait,
  guestClient,
  type WaitForGuestOptions,
  waitForGuestSocket,
} from "./guest-transport.js";
export { handOverTree, makeReadableByGuest } from "./host-dirs.js";
export { type Logger, silentLogger } from "./logger.js";
export { pickBackend } from "./pick-backend.js";
export { BaseSandbox, type BaseSandboxInit } from "./sandbox-base.js";
export { DEFAULT_LIMITS, validateCpuGroup, validateSpec } from "./spec.js";
export {
  type CpuGroup,
  type DestroyReason,
  GUEST_CODE_PATH,
  GUEST_PACKAGES_PATH,
  GUEST_SCRATCH_PATH,
  GUEST_SOCKET_NAME,
  type NetworkMode,
  type RuntimeKind,
  type Sandbox,
  type SandboxBackend,
  type SandboxCapabilities,
  type SandboxEvent,
  type SandboxEventListener,
  type SandboxEventType,
  type SandboxLimits,
  type SandboxSpec,
  type SandboxState,
  type SandboxStats,
} from "./types.js";
export { DEFAULT_UID_RANGE, UidAllocator, type UidRange } from "./uid-allocator.js";
