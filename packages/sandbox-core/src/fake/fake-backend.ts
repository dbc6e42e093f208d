import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONFORMANCE_GUEST_SOURCE } from "../conformance/guest-source.js";
import { SandboxCreateError, SandboxGuestStartError } from "../errors.js";
import { SandboxEventHub } from "../event-hub.js";
import { guestClient, waitForGuestSocket } from "../guest-transport.js";
import { BaseSandbox } from "../sandbox-base.js";
import { validateSpec } from "../spec.js";
import {
  type CpuGroup,
  type DestroyReason,
  GUEST_SOCKET_NAME,
  type Sandbox,
  type SandboxBackend,
  type SandboxCapabilities,
  type SandboxSpec,
  type SandboxStats,
} from "../types.js";

/** What a fake guest gets: where to listen, and how to "exit" (which kills its sandbox). */
export interface FakeGuestContext {
  readonly spec: SandboxSpec;
  readonly socketPath: string;
  readonly env: Readonly<Record<string, string>>;
  readonly exit: (code: number) => void;
}

export interface FakeGuest {
  close(): Promise<void>;
}

/** Starts a guest in-process. It must listen on `ctx.socketPath`. */
export type FakeGuestFactory = (ctx: FakeGuestContext) => Promise<FakeGuest>;

export interface FakeBackendOptions {
  /** Defaults to the conformance guest, run in this process. */
  readonly guest?: FakeGuestFactory;
  /** Parent dir for scratch dirs; defaults to a fresh temp dir. */
  readonly workDir?: string;
  readonly name?: string;
  /**
   * Claims `limits.cpuGroups` and `joinCpuGroup`, for upper layers' tests: specs keep their
   * group and sandboxes join one, but the fake enforces no CPU limit at all.
   */
  readonly cpuGroups?: boolean;
}

const FAKE_CAPABILITIES: SandboxCapabilities = {
  fork: false,
  pause: false,
  downsizePausedMemory: false,
  limits: { memory: false, cpu: false, procs: false },
  networkModes: ["host", "none"],
};

/**
 * An in-memory backend: no isolation, no processes. Guests run inside this process and listen on
 * a real unix socket, so upper layers are tested over the same transport as with real backends.
 */
export function fakeBackend(options: FakeBackendOptions = {}): SandboxBackend {
  const hub = new SandboxEventHub(options.name ?? "fake");
  const live = new Set<FakeSandbox>();
  const guestFactory = options.guest ?? conformanceGuest;
  const capabilities: SandboxCapabilities = options.cpuGroups
    ? {
        ...FAKE_CAPABILITIES,
        limits: { ...FAKE_CAPABILITIES.limits, cpuGroups: true },
        joinCpuGroup: true,
      }
    : FAKE_CAPABILITIES;
  let workDir: Promise<string> | undefined;
  const scratchRoot = () => {
    workDir ??= options.workDir
      ? mkdir(options.workDir, { recursive: true }).then(() => options.workDir as string)
      : mkdtemp(join(tmpdir(), "ol-fake-"));
    return workDir;
  };

  return {
    name: options.name ?? "fake",
    capabilities,
    on: (listener) => hub.on(listener),
    async create(spec: SandboxSpec): Promise<Sandbox> {
      validateSpec(spec, capabilities);
      const started = performance.now();
      const id = `fake-${randomUUID().slice(0, 8)}`;
      const ownScratch = spec.scratchDir === undefined;
      const scratchDir = spec.scratchDir ?? join(await scratchRoot(), id);
      await mkdir(scratchDir, { recursive: true });
      const socketPath = join(scratchDir, GUEST_SOCKET_NAME);
      let exited: number | undefined;
      let sandbox: FakeSandbox | undefined;
      let guest: FakeGuest;
      try {
        guest = await guestFactory({
          spec,
          socketPath,
          env: { ...spec.env },
          exit: (code) => {
            exited = code;
            void sandbox?.crash();
          },
        });
      } catch (error) {
        if (ownScratch) await rm(scratchDir, { recursive: true, force: true });
        throw new SandboxCreateError(`fake sandbox ${id}: guest failed to start`, { cause: error });
      }
      const ready = await waitForGuestSocket(scratchDir, {
        timeoutMs: 5000,
        stillAlive: () => (exited === undefined ? undefined : `guest exited with ${exited}`),
      }).catch(async (error: unknown) => {
        await guest.close().catch(() => {});
        if (ownScratch) await rm(scratchDir, { recursive: true, force: true });
        throw error;
      });
      if (!ready.socket) {
        await guest.close().catch(() => {});
        if (ownScratch) await rm(scratchDir, { recursive: true, force: true });
        throw new SandboxGuestStartError(`fake sandbox ${id}: ${ready.reason}`);
      }
      sandbox = new FakeSandbox(
        { id, spec, transport: guestClient(ready.socket), emit: hub.emit },
        guest,
        capabilities.joinCpuGroup === true,
        () => {
          live.delete(sandbox as FakeSandbox);
          return ownScratch ? rm(scratchDir, { recursive: true, force: true }) : Promise.resolve();
        },
      );
      live.add(sandbox);
      hub.emit({ type: "created", sandboxId: id, ms: performance.now() - started });
      return sandbox;
    },
    async cleanup() {
      await Promise.all([...live].map((s) => s.destroy("shutdown")));
      if (workDir && !options.workDir) await rm(await workDir, { recursive: true, force: true });
      workDir = undefined;
    },
  };
}

class FakeSandbox extends BaseSandbox {
  readonly #guest: FakeGuest;
  readonly #onDestroyed: () => Promise<void>;
  readonly #canJoin: boolean;
  readonly #started = process.cpuUsage();

  constructor(
    init: ConstructorParameters<typeof BaseSandbox>[0],
    guest: FakeGuest,
    canJoin: boolean,
    onDestroyed: () => Promise<void>,
  ) {
    super(init);
    this.#guest = guest;
    this.#canJoin = canJoin;
    this.#onDestroyed = onDestroyed;
  }

  protected override doJoinCpuGroup(group: CpuGroup): Promise<void> {
    return this.#canJoin ? Promise.resolve() : super.doJoinCpuGroup(group);
  }

  crash(): Promise<void> {
    return this.died("crashed");
  }

  protected doPause(): Promise<void> {
    return Promise.resolve();
  }

  protected doUnpause(): Promise<void> {
    return Promise.resolve();
  }

  protected async doDestroy(_reason: DestroyReason): Promise<void> {
    await this.#guest.close().catch(() => {});
    await this.#onDestroyed();
  }

  protected doStats(): Promise<SandboxStats> {
    const cpu = process.cpuUsage(this.#started);
    return Promise.resolve({
      memoryBytes: 0,
      memoryLimitBytes: this.spec.limits.memoryMb * 1024 * 1024,
      cpuUsageUs: cpu.user + cpu.system,
      pids: 1,
    });
  }

  protected doLogs(): Promise<string> {
    return Promise.resolve("");
  }
}

let guestModule: Promise<{ start: (o: object) => Promise<FakeGuest> }> | undefined;

/** The conformance guest, imported once from its source text and started in-process. */
const conformanceGuest: FakeGuestFactory = async (ctx) => {
  guestModule ??= import(
    `data:text/javascript;base64,${Buffer.from(CONFORMANCE_GUEST_SOURCE).toString("base64")}`
  );
  const mod = await guestModule;
  return mod.start({ socketPath: ctx.socketPath, env: ctx.env, exit: ctx.exit });
};
