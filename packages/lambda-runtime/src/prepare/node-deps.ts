import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, symlink } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import {
  type Logger,
  type SandboxBackend,
  type SandboxLimits,
  silentLogger,
} from "@openlambda/sandbox-core";
import { DependencyInstallError } from "../errors.js";
import { nodeGuestRuntimeDir } from "../runtime-paths.js";
import { execInSandbox, summariseFailure } from "./exec-client.js";
import { ensureRootOwnedDir, isSealedInstall, publishInstall } from "./installed-tree.js";

export interface NodeDepsOptions {
  readonly backend: SandboxBackend;
  /**
   * Root of installs: one dir per dependency set, and `installer/`, the installer sandboxes'
   * scratch dir (pnpm's content-addressed `store/`, its home, installs in progress).
   */
  readonly dir: string;
  readonly limits: SandboxLimits;
  readonly logger?: Logger;
  /** The npm registry the installer uses (default: pnpm's, the public registry). */
  readonly registryUrl?: string;
}

/**
 * The base's CA bundle (the host's, copied by the base builder): Node's own list lacks the CAs
 * an operator added, such as a TLS-inspecting egress proxy's, which the registry sits behind.
 */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** Where a lambda's installed dependencies appear inside its sandbox. */
export const DEPS_PACKAGE = "deps";
const LOCKFILES = ["pnpm-lock.yaml", "package-lock.json"];
/** What an installer sandbox sees at /host: never the finished installs beside it. */
const INSTALLER_SCRATCH = "installer";

export interface InstalledDeps {
  /** Host dir holding `node_modules`, mounted read-only at /packages/deps. */
  readonly dir: string;
  readonly reused: boolean;
  readonly ms: number;
}

/**
 * Installs a lambda's package.json dependencies with pnpm inside an installer sandbox, once per
 * dependency set (package.json's dependencies plus its lockfile), into a shared pnpm store, so a
 * package version is downloaded once for every lambda that uses it. Installs run one at a time.
 * Nothing half-installed is ever used: an install is built under a temporary name and, once
 * pnpm succeeded and the installer sandbox is gone, made root-owned and read-only and renamed
 * into place, out of every installer's reach. pnpm copies files out of the store rather than
 * hard-linking them, so an install shares no inode with what a later installer can write. The
 * lambda's code dir gets `node_modules` as a symlink to /packages/deps/node_modules, where its
 * sandbox sees the install read-only.
 */
export class NodeDepsInstaller {
  readonly #opts: NodeDepsOptions;
  readonly #log: Logger;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #inflight = new Map<string, Promise<InstalledDeps>>();
  readonly #listeners = new Set<(lambda: string, line: string) => void>();

  constructor(options: NodeDepsOptions) {
    this.#opts = options;
    this.#log = options.logger ?? silentLogger;
  }

  /** Follows every install's output lines (with the lambda they are for); returns the unsubscribe. */
  onProgress(listener: (lambda: string, line: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Whether a code dir has dependencies to install (and none vendored). */
  static needsInstall(codeDir: string): Promise<boolean> {
    return dependencySet(codeDir).then(
      (set) => set !== undefined && !existsSync(join(codeDir, "node_modules")),
    );
  }

  /** Installs (or reuses) the code dir's dependencies and links them into the code dir. */
  async install(lambda: string, codeDir: string): Promise<InstalledDeps | undefined> {
    const set = await dependencySet(codeDir);
    if (!set) return undefined;
    const link = join(codeDir, "node_modules");
    let pending = this.#inflight.get(set.hash);
    if (!pending) {
      pending = this.#installSet(lambda, codeDir, set).finally(() =>
        this.#inflight.delete(set.hash),
      );
      this.#inflight.set(set.hash, pending);
    }
    const installed = await pending;
    if (!existsSync(link))
      await symlink(`/packages/${DEPS_PACKAGE}/node_modules`, link).catch(() => {});
    return installed;
  }

  async #installSet(lambda: string, codeDir: string, set: DependencySet): Promise<InstalledDeps> {
    const target = join(this.#opts.dir, set.hash);
    if (isSealedInstall(target)) return { dir: target, reused: true, ms: 0 };
    // One install at a time: they share the store and the installer's socket.
    const run = this.#queue.then(() => this.#runInstall(lambda, codeDir, set, target));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #runInstall(
    lambda: string,
    codeDir: string,
    set: DependencySet,
    target: string,
  ): Promise<InstalledDeps> {
    if (isSealedInstall(target)) return { dir: target, reused: true, ms: 0 };
    const started = performance.now();
    const id = randomUUID().slice(0, 6);
    const work = `.tmp-${set.hash}-${id}`;
    await ensureRootOwnedDir(this.#opts.dir);
    const scratch = join(this.#opts.dir, INSTALLER_SCRATCH);
    await mkdir(scratch, { recursive: true });
    this.#log.info(
      { lambda, dependencies: set.names.join(" ") },
      "installing dependencies with pnpm",
    );
    const lines: string[] = [];
    const pnpm = (...args: string[]) => ["node", "/packages/pnpm/bin/pnpm.cjs", ...args];
    const common = [
      "--store-dir",
      "/host/store",
      "--config.confirmModulesPurge=false",
      // Hard links would share inodes with the store, which every later installer writes to.
      "--config.package-import-method=clone-or-copy",
      "--reporter=append-only",
    ];
    const hasLock = (name: string) => existsSync(join(codeDir, name));
    // The guest makes its own directories, so they belong to its uid, whatever uid that is.
    const copy = ["package.json", ...LOCKFILES.filter(hasLock)]
      .map((f) => `/handler/${f}`)
      .join(" ");
    const steps: string[][] = [
      ["sh", "-c", `mkdir -p /host/store /host/.home /host/${work} && cp ${copy} /host/${work}/`],
    ];
    if (hasLock("package-lock.json") && !hasLock("pnpm-lock.yaml"))
      steps.push(pnpm("import", ...common));
    const frozen = LOCKFILES.some(hasLock);
    steps.push(
      pnpm(
        "install",
        "--prod",
        "--ignore-scripts",
        frozen ? "--frozen-lockfile" : "--no-frozen-lockfile",
        ...common,
      ),
    );
    const sandbox = await this.#opts.backend.create({
      codeDir,
      scratchDir: scratch,
      runtime: "node",
      command: ["node", "/packages/ol-runtime/exec-guest.js"],
      limits: this.#opts.limits,
      network: "host",
      packages: { "ol-runtime": nodeGuestRuntimeDir(), pnpm: pnpmDir() },
      env: { HOME: "/host/.home" },
      labels: { lambda, role: "installer" },
    });
    let failure: { error: unknown } | undefined;
    try {
      for (const [i, argv] of steps.entries()) {
        const cwd = i === 0 ? "/host" : `/host/${work}`;
        const run = await execInSandbox(sandbox.dispatcher, {
          argv,
          cwd,
          env: this.#installEnv(),
          timeoutMs: this.#opts.limits.timeoutMs,
          onLine: (line) => {
            this.#log.debug({ lambda, pnpm: line }, "install progress");
            for (const listener of this.#listeners) listener(lambda, line);
          },
        });
        lines.push(...run.lines);
        if (run.exit !== 0) {
          throw new DependencyInstallError(
            `lambda ${lambda}: installing dependencies (${set.names.join(", ")}) failed: ${summariseFailure(lines, /ERR_PNPM|ERR!/, "pnpm")}`,
          );
        }
      }
    } catch (error) {
      failure = { error };
    }
    // The guest is gone before the worker touches what it wrote, so nothing changes under it;
    // if it may not be, what it wrote is left alone (removing it as root would race the guest).
    const stopped = await sandbox.destroy("installer-done").then(
      () => true,
      (error: unknown) => {
        failure ??= { error };
        return false;
      },
    );
    const workDir = join(scratch, work);
    try {
      if (failure) throw failure.error;
      await publishInstall({
        installed: workDir,
        staging: join(this.#opts.dir, `.staging-${set.hash}-${id}`),
        target,
      });
    } catch (error) {
      if (stopped) await rm(workDir, { recursive: true, force: true }).catch(() => {});
      throw error instanceof DependencyInstallError
        ? error
        : new DependencyInstallError(
            `lambda ${lambda}: the installer failed: ${(error as Error).message}`,
            { cause: error },
          );
    }
    const ms = performance.now() - started;
    this.#log.info({ lambda, ms: Math.round(ms) }, "dependencies installed");
    return { dir: target, reused: false, ms };
  }

  #installEnv(): Record<string, string> {
    const env: Record<string, string> = {
      HOME: "/host/.home",
      CI: "true",
      NODE_EXTRA_CA_CERTS: SYSTEM_CA_BUNDLE,
    };
    if (this.#opts.registryUrl) env.npm_config_registry = this.#opts.registryUrl;
    return env;
  }
}

interface DependencySet {
  readonly hash: string;
  readonly names: readonly string[];
}

/** The lambda's dependencies and lockfile, hashed: equal sets share one install. */
async function dependencySet(codeDir: string): Promise<DependencySet | undefined> {
  let pkg: { dependencies?: Record<string, string> };
  try {
    pkg = JSON.parse(await readFile(join(codeDir, "package.json"), "utf8")) as typeof pkg;
  } catch {
    return undefined;
  }
  const deps = pkg.dependencies ?? {};
  const names = Object.keys(deps).sort();
  if (names.length === 0) return undefined;
  const hash = createHash("sha256").update(JSON.stringify(names.map((n) => [n, deps[n]])));
  for (const lock of LOCKFILES) {
    const text = await readFile(join(codeDir, lock), "utf8").catch(() => undefined);
    if (text !== undefined) hash.update(`${lock}\n${text}`);
  }
  return { hash: hash.digest("hex").slice(0, 20), names };
}

/** The pnpm package this worker ships, exposed read-only to installer sandboxes. */
function pnpmDir(): string {
  // pnpm exports only its package.json, as its main entry.
  return dirname(createRequire(import.meta.url).resolve("pnpm"));
}
