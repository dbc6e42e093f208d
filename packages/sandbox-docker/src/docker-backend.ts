import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import {
  guestClient,
  handOverTree,
  type Logger,
  makeReadableByGuest,
  mountDiskTmpfs,
  type Sandbox,
  type SandboxBackend,
  type SandboxCapabilities,
  SandboxEventHub,
  SandboxGuestStartError,
  type SandboxSpec,
  SandboxUnsupportedError,
  silentLogger,
  UidAllocator,
  type UidRange,
  validateSpec,
  waitForGuestSocket,
} from "@openlambda/sandbox-core";
import { ensureBaseImage } from "./base-image.js";
import { containerConfig } from "./container-config.js";
import { DockerSandbox, removeContainer, waitForExit } from "./docker-sandbox.js";
import { engineSocketPath } from "./engine-address.js";
import { DockerEngine, type EngineVersion } from "./engine-client.js";
import { DockerBaseImageError } from "./errors.js";
import { canMountDisks, unmountDisk } from "./host-disk.js";
import { LABEL_INSTANCE, labelFilter } from "./labels.js";
import { demultiplexDockerStream } from "./stream-demux.js";

/** The backend's name, as chosen by `"sandbox": "docker"` in a worker's config. */
export const DOCKER_BACKEND_NAME = "docker";

/** Prefix of the temp dir holding the scratch dirs the backend makes. */
export const SCRATCH_ROOT_PREFIX = "ol-docker-";

export interface DockerBackendOptions {
  /** The engine's unix socket; default `DOCKER_HOST=unix://...`, then `/var/run/docker.sock`. */
  readonly socketPath?: string;
  /**
   * An image the engine already has (`docker.base_image` in the worker's config); it must hold
   * the guest runtime (node at a PATH the command names). Never pulled: no registry is assumed.
   */
  readonly image?: string;
  /** A base root filesystem (sandbox-sock's `buildBaseRootfs`) imported as the default image. */
  readonly baseDir?: string;
  /** The base's content hash (tags the image); computed from the tree's metadata when omitted. */
  readonly baseHash?: string;
  /** The worker's identity, put on every container; default `<hostname>-<pid>`. */
  readonly workerId?: string;
  /** Where the backend makes scratch dirs for specs without one; default a fresh temp dir. */
  readonly workDir?: string;
  /**
   * Host uids for guests, one per live container (its gid is the same number), so that plain
   * Unix permissions separate tenants too. Default `DEFAULT_UID_RANGE` (1000000, 65536 of them).
   */
  readonly uidRange?: UidRange;
  /** How long a new guest may take to listen on /host/ol.sock; default 15 s. */
  readonly startTimeoutMs?: number;
  /**
   * Size of the /tmp tmpfs of a sandbox whose spec has no `limits.diskMb`, MiB (counts against
   * its memory); default 16.
   */
  readonly tmpMb?: number;
  /** Lines `logs()` returns (and a failed start quotes); default 200. */
  readonly logTailLines?: number;
  readonly logger?: Logger;
  readonly name?: string;
}

export interface DockerReadyInfo {
  readonly engine: EngineVersion;
  readonly socketPath: string;
  /** The image sandboxes are made from. */
  readonly image: string;
  /** Whether `ready()` imported the base (false: the engine had that tag already). */
  readonly imageBuilt: boolean;
}

export interface DockerBackend extends SandboxBackend {
  /** The worker's identity on this backend's containers (`org.openlambda.worker`). */
  readonly workerId: string;
  /**
   * Checks the engine (reachable, API new enough) and makes sure the image exists, importing
   * the base when needed. `create` calls it too; a worker calls it at start to fail early with
   * `BackendUnavailableError` (engine) or `DockerBaseImageError`/`BackendError` (image).
   */
  ready(): Promise<DockerReadyInfo>;
}

export const DOCKER_CAPABILITIES: SandboxCapabilities = {
  // A container cannot be forked from another; zygotes are SOCK's.
  fork: false,
  pause: true,
  downsizePausedMemory: false,
  // disk: as root, which alone can mount the tmpfs that bounds /host; a backend made by any
  // other user says false.
  limits: { memory: true, cpu: true, procs: true, disk: true },
  networkModes: ["host", "none"],
  uidPerSandbox: true,
};

/**
 * The Docker backend: one container per sandbox, made over the Engine API on its unix socket
 * (undici; no `docker` CLI). Cheap to call: nothing is contacted until `ready()` or `create()`.
 */
export function dockerBackend(options: DockerBackendOptions = {}): DockerBackend {
  const name = options.name ?? DOCKER_BACKEND_NAME;
  const logger = (options.logger ?? silentLogger).child({ backend: name });
  const hub = new SandboxEventHub(name);
  const workerId = options.workerId ?? `${hostname()}-${process.pid}`;
  const instanceId = randomBytes(6).toString("hex");
  // Never 0: root in the container is one kernel bug from root outside.
  const uids = new UidAllocator(options.uidRange);
  const startTimeoutMs = options.startTimeoutMs ?? 15_000;
  const capabilities: SandboxCapabilities = {
    ...DOCKER_CAPABILITIES,
    limits: { ...DOCKER_CAPABILITIES.limits, disk: canMountDisks() },
  };
  const live = new Set<DockerSandbox>();
  const creating = new Set<Promise<unknown>>();
  let engine: DockerEngine | undefined;
  let readyInfo: Promise<DockerReadyInfo> | undefined;
  let scratchRoot: Promise<string> | undefined;

  const getEngine = (): DockerEngine => {
    engine ??= new DockerEngine(engineSocketPath(options.socketPath));
    return engine;
  };

  const ready = (): Promise<DockerReadyInfo> => {
    readyInfo ??= (async () => {
      const client = getEngine();
      const version = await client.version();
      let image: string;
      let imageBuilt = false;
      if (options.image) {
        image = options.image;
        // A missing image fails here with the engine's "no such image" text: nothing is pulled.
        await client.raw({
          method: "GET",
          path: `/images/${encodeURIComponent(image)}/json`,
          what: `image ${image} (docker.base_image: load or build it locally, nothing is pulled)`,
        });
      } else if (options.baseDir) {
        const built = await ensureBaseImage(
          client,
          { dir: options.baseDir, ...(options.baseHash ? { hash: options.baseHash } : {}) },
          logger,
        );
        image = built.image;
        imageBuilt = built.built;
      } else {
        throw new DockerBaseImageError(
          "the docker backend needs an image: give `image` (docker.base_image) or `baseDir` (a base root filesystem, e.g. from buildBaseRootfs)",
        );
      }
      logger.debug({ engine: version, image }, "docker backend ready");
      return { engine: version, socketPath: client.socketPath, image, imageBuilt };
    })().catch((error: unknown) => {
      readyInfo = undefined;
      throw error;
    });
    return readyInfo;
  };

  const getScratchRoot = (): Promise<string> => {
    scratchRoot ??= options.workDir
      ? mkdir(options.workDir, { recursive: true }).then(() => options.workDir as string)
      : mkdtemp(join(tmpdir(), SCRATCH_ROOT_PREFIX));
    return scratchRoot;
  };

  const createSandbox = async (spec: SandboxSpec): Promise<Sandbox> => {
    const started = performance.now();
    const { image } = await ready();
    const client = getEngine();
    const id = `docker-${randomBytes(6).toString("hex")}`;
    const ownsScratch = spec.scratchDir === undefined;
    const ownedDir = ownsScratch ? join(await getScratchRoot(), id) : undefined;
    // With a disk limit, /host and /tmp are dirs in one host tmpfs of that size (root only).
    const diskMb = spec.limits.diskMb;
    const onDisk = ownedDir !== undefined && diskMb !== undefined && canMountDisks();
    const scratchDir = spec.scratchDir ?? (onDisk ? join(ownedDir, "host") : (ownedDir as string));
    const tmpDir = onDisk ? join(ownedDir as string, "tmp") : undefined;
    await mkdir(ownedDir ?? scratchDir, { recursive: true });
    let containerId: string | undefined;
    const stopWatching = new AbortController();
    const uid = uids.take();
    const gid = uid;
    const undo = async () => {
      uids.release(uid);
      stopWatching.abort();
      if (containerId) await removeContainer(client, containerId).catch(() => {});
      if (ownedDir) {
        await unmountDisk(ownedDir).catch(() => {});
        await rm(ownedDir, { recursive: true, force: true }).catch(() => {});
      }
    };
    try {
      if (onDisk) {
        await mountDiskTmpfs(ownedDir as string, diskMb as number);
        await Promise.all([mkdir(scratchDir), mkdir(tmpDir as string)]);
      }
      await prepareHostDirs(spec, scratchDir, ownsScratch, uid, gid, tmpDir);
      const { body } = await client.json<{ Id: string }>({
        method: "POST",
        path: "/containers/create",
        query: { name: `ol-${id}` },
        json: containerConfig({
          spec,
          sandboxId: id,
          image,
          scratchDir,
          ownsScratch,
          ...(ownedDir ? { ownedDir } : {}),
          ...(tmpDir ? { tmpDir } : {}),
          workerId,
          instanceId,
          user: `${uid}:${gid}`,
          // Without a disk of its own, the engine's /tmp holds the disk limit (or tmpMb).
          tmpMb: diskMb ?? options.tmpMb ?? 16,
        }),
        what: `create container for ${id}`,
      });
      containerId = body.Id;
      await client.raw({
        method: "POST",
        path: `/containers/${containerId}/start`,
        what: `start ${id}`,
      });
      let exitCode: number | undefined;
      const exited = waitForExit(client, containerId, stopWatching.signal);
      exited.then(
        (code) => {
          exitCode = code;
        },
        () => {},
      );
      const ready = await waitForGuestSocket(scratchDir, {
        timeoutMs: startTimeoutMs,
        stillAlive: () =>
          exitCode === undefined ? undefined : `guest exited with code ${exitCode}`,
      });
      if (!ready.socket) {
        const logs = await tailLogs(client, containerId, 20);
        throw new SandboxGuestStartError(
          `docker sandbox ${id}: ${ready.reason}${logs ? `; guest output:\n${logs}` : ""}`,
        );
      }
      const sandbox: DockerSandbox = new DockerSandbox({
        id,
        spec,
        transport: guestClient(ready.socket),
        emit: hub.emit,
        engine: client,
        containerId,
        ...(ownedDir ? { ownedDir } : {}),
        logTailLines: options.logTailLines ?? 200,
        exited,
        stopWatching,
        onGone: () => {
          live.delete(sandbox);
          uids.release(uid);
        },
      });
      live.add(sandbox);
      hub.emit({ type: "created", sandboxId: id, ms: performance.now() - started });
      return sandbox;
    } catch (error) {
      await undo();
      throw error;
    }
  };

  return {
    name,
    capabilities,
    workerId,
    ready,
    on: (listener) => hub.on(listener),
    async create(spec: SandboxSpec, parent?: Sandbox): Promise<Sandbox> {
      validateSpec(spec, capabilities);
      if (parent) {
        throw new SandboxUnsupportedError(
          "the docker backend cannot create a sandbox from a parent (no fork)",
        );
      }
      const pending = createSandbox(spec);
      creating.add(pending);
      try {
        return await pending;
      } finally {
        creating.delete(pending);
      }
    },
    async cleanup(): Promise<void> {
      // Creates in flight finish first, so that none lands after cleanup and leaks.
      await Promise.allSettled([...creating]);
      await Promise.allSettled([...live].map((s) => s.destroy("shutdown")));
      if (engine) {
        const client = engine;
        // Anything of this backend value the engine still has (a create cut short by a crash
        // between create and bookkeeping) goes too.
        try {
          const { body } = await client.json<{ Id: string }[]>({
            method: "GET",
            path: "/containers/json",
            query: { all: true, filters: labelFilter({ [LABEL_INSTANCE]: instanceId }) },
            what: "list this backend's containers",
          });
          await Promise.all(body.map((c) => removeContainer(client, c.Id)));
        } catch (error) {
          logger.warn({ err: error }, "docker cleanup could not list leftover containers");
        }
        await client.close();
        engine = undefined;
        readyInfo = undefined;
      }
      if (scratchRoot) {
        const root = await scratchRoot.catch(() => undefined);
        if (root && !options.workDir) await rm(root, { recursive: true, force: true });
        scratchRoot = undefined;
      }
    },
  };
}

/**
 * The guest runs as an unprivileged uid: it must own the scratch dir (to make its socket) and
 * be able to read the code and package dirs, which callers often make 0700 (mkdtemp).
 */
async function prepareHostDirs(
  spec: SandboxSpec,
  scratchDir: string,
  ownsScratch: boolean,
  uid: number,
  gid: number,
  tmpDir: string | undefined,
): Promise<void> {
  // A /tmp on the sandbox's disk is the guest's alone, like its /host.
  if (tmpDir) await chown(tmpDir, uid, gid);
  try {
    if (ownsScratch) await chown(scratchDir, uid, gid);
    else await handOverTree(scratchDir, uid, gid);
  } catch {
    // Not root (a docker-group user): a world-writable scratch dir is the next best thing.
    await chmod(scratchDir, 0o777);
  }
  await Promise.all([spec.codeDir, ...Object.values(spec.packages ?? {})].map(makeReadableByGuest));
}

async function tailLogs(engine: DockerEngine, containerId: string, lines: number): Promise<string> {
  try {
    const { body } = await engine.raw({
      method: "GET",
      path: `/containers/${containerId}/logs`,
      query: { stdout: true, stderr: true, tail: lines },
      what: `logs of ${containerId}`,
    });
    return demultiplexDockerStream(body).combined.trim();
  } catch {
    return "";
  }
}
