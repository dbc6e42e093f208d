import {
  GUEST_CODE_PATH,
  GUEST_PACKAGES_PATH,
  GUEST_SCRATCH_PATH,
  GUEST_SOCKET_NAME,
  type SandboxSpec,
} from "@openlambda/sandbox-core";
import {
  LABEL_INSTANCE,
  LABEL_MANAGED,
  LABEL_OWNED_SCRATCH,
  LABEL_SANDBOX,
  LABEL_WORKER,
} from "./labels.js";

const MIB = 1024 * 1024;
/** CFS period the cpu percent is expressed against (the kernel's default, 100 ms). */
export const CPU_PERIOD_US = 100_000;

export interface ContainerConfigInput {
  readonly spec: SandboxSpec;
  readonly sandboxId: string;
  readonly image: string;
  /** Bound read-write at /host. */
  readonly scratchDir: string;
  /** Whether the backend made `scratchDir` (and so may delete it, even from force-cleanup). */
  readonly ownsScratch: boolean;
  /**
   * The directory the backend made and removes, when not `scratchDir` itself: the sandbox's
   * disk (a host tmpfs) holding `scratchDir` and `tmpDir`. Labelled for force-cleanup.
   */
  readonly ownedDir?: string;
  /** A host directory bound at /tmp (on the sandbox's disk); without it /tmp is a tmpfs of `tmpMb`. */
  readonly tmpDir?: string;
  readonly workerId: string;
  readonly instanceId: string;
  /** `uid:gid` the guest runs as. */
  readonly user: string;
  /** Size of the engine's tmpfs at /tmp when there is no `tmpDir`, MiB (charged to the sandbox's memory). */
  readonly tmpMb: number;
}

/**
 * The body of `POST /containers/create` for a sandbox spec. Kept pure (no I/O) so the mapping
 * from the contract to Docker's knobs is unit-tested without an engine.
 */
export function containerConfig(input: ContainerConfigInput): Record<string, unknown> {
  const { spec } = input;
  const memory = spec.limits.memoryMb * MIB;
  const mounts: Record<string, unknown>[] = [
    bind(spec.codeDir, GUEST_CODE_PATH, true),
    bind(input.scratchDir, GUEST_SCRATCH_PATH, false),
    ...(input.tmpDir ? [bind(input.tmpDir, "/tmp", false)] : []),
    ...Object.entries(spec.packages ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, dir]) => bind(dir, `${GUEST_PACKAGES_PATH}/${name}`, true)),
  ];
  const env = {
    HOME: "/tmp",
    OL_GUEST_SOCKET: `${GUEST_SCRATCH_PATH}/${GUEST_SOCKET_NAME}`,
    ...spec.env,
  };
  const labels: Record<string, string> = {
    [LABEL_MANAGED]: "true",
    [LABEL_WORKER]: input.workerId,
    [LABEL_INSTANCE]: input.instanceId,
    [LABEL_SANDBOX]: input.sandboxId,
  };
  if (input.ownsScratch) labels[LABEL_OWNED_SCRATCH] = input.ownedDir ?? input.scratchDir;
  return {
    Image: input.image,
    // Reset any ENTRYPOINT of an operator's image: the spec's argv is the whole command.
    Entrypoint: [""],
    Cmd: [...spec.command],
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    WorkingDir: GUEST_CODE_PATH,
    User: input.user,
    Labels: labels,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    NetworkDisabled: spec.network === "none",
    HostConfig: {
      NetworkMode: spec.network ?? "host",
      Mounts: mounts,
      // The base is shared by every sandbox; like SOCK's read-only bind of the base, the guest
      // writes only to /host and /tmp.
      ReadonlyRootfs: true,
      ...(input.tmpDir
        ? {}
        : { Tmpfs: { "/tmp": `rw,nosuid,nodev,size=${input.tmpMb}m,mode=1777` } }),
      // Swap equal to memory: the limit is a hard one, as on SOCK.
      Memory: memory,
      MemorySwap: memory,
      CpuPeriod: CPU_PERIOD_US,
      CpuQuota: Math.max(1000, Math.round((spec.limits.cpuPercent / 100) * CPU_PERIOD_US)),
      PidsLimit: spec.limits.procs,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      IpcMode: "private",
      // The backend removes containers itself, after reading why they died (OOM or not).
      AutoRemove: false,
      RestartPolicy: { Name: "no" },
      LogConfig: { Type: "json-file", Config: { "max-size": "1m", "max-file": "1" } },
      // An init (docker-init, tini) as PID 1: the guest then is not PID 1, so the signals it
      // sends itself (SIGKILL included) act, and its zombie children are reaped.
      Init: true,
    },
  };
}

function bind(source: string, target: string, readOnly: boolean): Record<string, unknown> {
  return { Type: "bind", Source: source, Target: target, ReadOnly: readOnly };
}
