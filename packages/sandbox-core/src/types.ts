import type { Dispatcher } from "undici";

/** Lifecycle states. `dead` is final. */
export type SandboxState = "running" | "paused" | "dead";

/** `host` shares the host's network (OpenLambda's behaviour); `none` has loopback only. */
/**
 * `egress`: a network namespace of its own with outbound access to the outside world and nothing
 * on the host (its loopback, its addresses, the worker's ports), other sandboxes or link-local
 * addresses; `none`: loopback only; `host`: the host's network stack (OpenLambda's behaviour).
 */
export type NetworkMode = "egress" | "host" | "none";

/** The guest runtime a sandbox is made for; backends may use it to pick a base or a zygote. */
export type RuntimeKind = "node" | "python" | "custom";

export interface SandboxLimits {
  /** Hard memory limit, MiB. The guest is killed past it. */
  readonly memoryMb: number;
  /** CPU share as a percent of one core (100 = one full core). */
  readonly cpuPercent: number;
  /** Maximum number of processes and threads in the sandbox. */
  readonly procs: number;
  /** Upper bound for one request to the guest, ms. Enforced by the caller of the transport. */
  readonly timeoutMs: number;
  /**
   * What the guest's files may take, MiB: `/tmp` and a backend-made `/host` together (a
   * caller's `scratchDir` is the caller's to bound). Past it writes fail with `ENOSPC`. On SOCK
   * and Docker these files are tmpfs pages charged to the sandbox's memory, so `memoryMb` must
   * leave room for them. Omitted: the backend's plain directories, unbounded.
   */
  readonly diskMb?: number;
}

/**
 * Sandboxes naming the same group share one CPU budget: `cpuPercent` (percent of one core) across
 * all of them, and under contention every group gets the same share as every other, however many
 * sandboxes it runs. The lambda layer makes one group per lambda, so that no lambda takes the
 * machine. Each sandbox's own `limits.cpuPercent` still caps it within its group.
 */
export interface CpuGroup {
  /** 1-128 of A-Z a-z 0-9 . _ - (not . or ..): a lambda name. */
  readonly name: string;
  /** The whole group's CPU, percent of one core (100 = one full core for all its sandboxes). */
  readonly cpuPercent: number;
}

export interface SandboxSpec {
  /** Host directory with the lambda's code, exposed read-only at `/handler`. */
  readonly codeDir: string;
  /**
   * Host directory, exposed read-write at `/host`. The guest listens on `/host/ol.sock`.
   * When omitted the backend makes (and on destroy removes) a fresh one.
   */
  readonly scratchDir?: string;
  readonly runtime: RuntimeKind;
  /** argv of the guest process inside the sandbox; `argv[0]` is looked up on the base's PATH. */
  readonly command: readonly string[];
  readonly limits: SandboxLimits;
  readonly env?: Readonly<Record<string, string>>;
  readonly network?: NetworkMode;
  /** Host directories exposed read-only under `/packages/<name>`. */
  readonly packages?: Readonly<Record<string, string>>;
  /** Modules a zygote pre-imports. */
  readonly preImport?: readonly string[];
  /** `zygote` sandboxes are parents that `fork()` children; `leaf` sandboxes serve requests. */
  readonly role?: "leaf" | "zygote";
  /** The CPU group it shares a budget with (backends with `capabilities.limits.cpuGroups`). */
  readonly cpuGroup?: CpuGroup;
  /** Free-form labels, kept with the sandbox and shown in `/debug`. */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface SandboxStats {
  /** Resident memory charged to the sandbox, bytes. */
  readonly memoryBytes: number;
  /** Current memory limit, bytes (may be lower than the spec's after downsizing). */
  readonly memoryLimitBytes: number;
  /** Total CPU time used, microseconds. */
  readonly cpuUsageUs: number;
  readonly pids: number;
}

export interface SandboxCapabilities {
  /** `Sandbox.fork()` works. */
  readonly fork: boolean;
  /** pause/unpause really freeze the guest (a backend without it still accepts the calls). */
  readonly pause: boolean;
  /** A paused sandbox's memory limit can shrink to what it uses. */
  readonly downsizePausedMemory: boolean;
  /** Which of the spec's limits are enforced by the kernel or engine. */
  readonly limits: {
    readonly memory: boolean;
    readonly cpu: boolean;
    readonly procs: boolean;
    /** `limits.diskMb` bounds `/tmp` and a backend-made `/host` (writes past it get ENOSPC). */
    readonly disk?: boolean;
    /** `spec.cpuGroup` is enforced (create and fork); without it a spec naming one is refused. */
    readonly cpuGroups?: boolean;
  };
  /** `Sandbox.joinCpuGroup()` works: a running sandbox can be moved into a group. */
  readonly joinCpuGroup?: boolean;
  readonly networkModes: readonly NetworkMode[];
  /** Each live sandbox's guest runs as a uid no other live sandbox has. */
  readonly uidPerSandbox?: boolean;
}

export type DestroyReason =
  | "requested"
  | "evicted"
  | "idle"
  | "crashed"
  | "timeout"
  | "oom"
  | "pause-failed"
  | "unpause-failed"
  | "shutdown"
  | (string & {});

export type SandboxEvent =
  | { readonly type: "created"; readonly sandboxId: string; readonly ms: number }
  | { readonly type: "paused"; readonly sandboxId: string }
  | { readonly type: "unpaused"; readonly sandboxId: string }
  | { readonly type: "destroyed"; readonly sandboxId: string; readonly reason: DestroyReason }
  | { readonly type: "error"; readonly sandboxId?: string; readonly error: Error };

export type SandboxEventType = SandboxEvent["type"];
export type SandboxEventListener = (event: SandboxEvent) => void;

/** One isolated guest. See `BaseSandbox` for the lifecycle rules every implementation keeps. */
export interface Sandbox {
  readonly id: string;
  readonly spec: SandboxSpec;
  readonly state: SandboxState;
  /** HTTP/1.1 to the guest (its `/host/ol.sock`); rejects with `SandboxDeadError` after death. */
  readonly dispatcher: Dispatcher;
  /** Why the sandbox died, once it has. */
  readonly deathReason: DestroyReason | undefined;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  destroy(reason?: DestroyReason): Promise<void>;
  /** Destroys only when paused; resolves whether it did. Lets an evictor skip busy sandboxes. */
  destroyIfPaused(reason?: DestroyReason): Promise<boolean>;
  /** A child sandbox forked from this one (a zygote). Rejects when the backend cannot fork. */
  fork(spec: SandboxSpec): Promise<Sandbox>;
  /**
   * Moves a running sandbox made without a group into `group` (a ready runtime handed to its
   * lambda); `spec.cpuGroup` says so from then on. Rejects with `SandboxUnsupportedError` unless
   * the backend claims `capabilities.joinCpuGroup`, with `InvalidSpecError` when it is in a group.
   */
  joinCpuGroup(group: CpuGroup): Promise<void>;
  stats(): Promise<SandboxStats>;
  /** The guest's stdout and stderr so far (bounded tail). */
  logs(): Promise<string>;
  /** Resolves when the sandbox dies, for whatever reason. */
  readonly dead: Promise<DestroyReason>;
}

export interface SandboxBackend {
  readonly name: string;
  readonly capabilities: SandboxCapabilities;
  create(spec: SandboxSpec, parent?: Sandbox): Promise<Sandbox>;
  /** Destroys every sandbox this backend value made and removes what it left on the host. */
  cleanup(): Promise<void>;
  /** Subscribes to lifecycle events; returns the unsubscribe function. */
  on(listener: SandboxEventListener): () => void;
}

/** Where a guest listens, relative to the scratch dir. */
export const GUEST_SOCKET_NAME = "ol.sock";
/** Where the scratch dir is mounted inside a sandbox. */
export const GUEST_SCRATCH_PATH = "/host";
export const GUEST_CODE_PATH = "/handler";
export const GUEST_PACKAGES_PATH = "/packages";
