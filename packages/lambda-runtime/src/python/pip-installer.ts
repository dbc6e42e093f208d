import { randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type Logger,
  type SandboxBackend,
  type SandboxLimits,
  silentLogger,
} from "@openlambda/sandbox-core";

import { DependencyInstallError } from "../errors.js";
import { execInSandbox, summariseFailure } from "../prepare/exec-client.js";
import { ensureRootOwnedDir, isSealedInstall, publishInstall } from "../prepare/installed-tree.js";
import { nodeGuestRuntimeDir } from "../runtime-paths.js";
import { parseRequirements, type Requirement } from "./requirements.js";

export interface PipInstallerOptions {
  readonly backend: SandboxBackend;
  /** The shared package dir: one `<name>-<version>/` per installed package. */
  readonly dir: string;
  readonly limits: SandboxLimits;
  /** pip's index URL; "" for pip's default (PyPI); "none" for no index at all (`--no-index`). */
  readonly index?: string;
  /** A host dir of wheels and sdists pip may install from (`--find-links`); "" for none. */
  readonly findLinks?: string;
  readonly logger?: Logger;
}

/** A lambda's installed Python packages. */
export interface InstalledPython {
  readonly requirements: readonly Requirement[];
  /** Mount name under /packages → host dir, one per requirement. */
  readonly packages: Readonly<Record<string, string>>;
  readonly ms: number;
}

const FIND_LINKS_PACKAGE = "pip-find-links";

/**
 * Installs a Python lambda's requirements.txt with pip, one package per directory
 * (`<dir>/<name>-<version>/`), each version once for every lambda that pins it. pip runs inside
 * an installer sandbox (`installer_limits`) with `--no-deps --target`: a lambda lists every
 * package it needs, pinned, and sees exactly those on `sys.path`. A package is installed into a
 * temporary directory of its own (pip runs with no shared cache) and, once pip succeeded and
 * its sandbox is gone, made root-owned and read-only and renamed into place, so nothing half
 * installed is ever used and no later installer can change it. Installs run one at a time.
 */
export class PipInstaller {
  readonly #opts: PipInstallerOptions;
  readonly #log: Logger;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(options: PipInstallerOptions) {
    this.#opts = options;
    this.#log = options.logger ?? silentLogger;
  }

  get dir(): string {
    return this.#opts.dir;
  }

  /** The host dir of an installed package, or undefined when it is not (fully) installed. */
  installedDir(req: Requirement): string | undefined {
    const dir = join(this.#opts.dir, req.dir);
    return isSealedInstall(dir) ? dir : undefined;
  }

  /** Installs (or reuses) the packages of a code dir's requirements.txt; undefined without one. */
  async install(lambda: string, codeDir: string): Promise<InstalledPython | undefined> {
    let text: string;
    try {
      text = await readFile(join(codeDir, "requirements.txt"), "utf8");
    } catch {
      return undefined;
    }
    const requirements = parseRequirements(text, lambda);
    if (requirements.length === 0) return undefined;
    const started = performance.now();
    const missing = requirements.filter((r) => !this.installedDir(r));
    const dirs = await Promise.all(
      requirements.map((r) => (missing.includes(r) ? this.#installOne(lambda, r) : undefined)),
    );
    const packages: Record<string, string> = {};
    for (const [i, r] of requirements.entries())
      packages[r.dir] = dirs[i] ?? join(this.#opts.dir, r.dir);
    return { requirements, packages, ms: performance.now() - started };
  }

  #installOne(lambda: string, req: Requirement): Promise<string> {
    let pending = this.#inflight.get(req.dir);
    if (!pending) {
      const run = this.#queue.then(() => this.#runInstall(lambda, req));
      this.#queue = run.catch(() => {});
      pending = run.finally(() => this.#inflight.delete(req.dir));
      this.#inflight.set(req.dir, pending);
    }
    return pending;
  }

  async #runInstall(lambda: string, req: Requirement): Promise<string> {
    const done = this.installedDir(req);
    if (done) return done;
    const target = join(this.#opts.dir, req.dir);
    const id = randomUUID().slice(0, 8);
    await ensureRootOwnedDir(this.#opts.dir);
    const scratch = join(this.#opts.dir, ".tmp", `${req.dir}-${id}`);
    await mkdir(scratch, { recursive: true });
    const started = performance.now();
    const pin = `${req.name}==${req.version}`;
    this.#log.info({ lambda, package: pin }, "installing a Python package with pip");
    const args = [
      "python3",
      "-m",
      "pip",
      "install",
      "--no-deps",
      "--no-input",
      "--no-cache-dir",
      "--disable-pip-version-check",
      "--no-warn-script-location",
      // Building an sdist uses the base's setuptools and wheel: an isolated build env would
      // have to download them.
      "--no-build-isolation",
      "--target",
      `/host/${req.dir}`,
    ];
    const index = this.#opts.index ?? "";
    if (index === "none") args.push("--no-index");
    else if (index !== "") args.push("--index-url", index);
    const packages: Record<string, string> = { "ol-runtime": nodeGuestRuntimeDir() };
    if (this.#opts.findLinks) {
      packages[FIND_LINKS_PACKAGE] = this.#opts.findLinks;
      args.push("--find-links", `/packages/${FIND_LINKS_PACKAGE}`);
    }
    args.push(pin);
    const lines: string[] = [];
    let sandbox: Awaited<ReturnType<SandboxBackend["create"]>> | undefined;
    // Whether the guest is surely gone: only then does the worker touch what it wrote.
    let stopped = true;
    try {
      sandbox = await this.#opts.backend.create({
        codeDir: scratch,
        scratchDir: scratch,
        runtime: "node",
        command: ["node", "/packages/ol-runtime/exec-guest.js"],
        limits: this.#opts.limits,
        network: "host",
        packages,
        env: { HOME: "/host/.home" },
        labels: { lambda, role: "installer", package: pin },
      });
      const run = await execInSandbox(sandbox.dispatcher, {
        argv: args,
        cwd: "/host",
        env: { HOME: "/host/.home", PIP_ROOT_USER_ACTION: "ignore" },
        timeoutMs: this.#opts.limits.timeoutMs,
        onLine: (line) => this.#log.debug({ lambda, pip: line }, "pip progress"),
      });
      lines.push(...run.lines);
      if (run.exit !== 0) {
        throw new DependencyInstallError(
          `lambda ${lambda}: installing ${pin} with pip failed: ${summarise(lines)}`,
        );
      }
      const done = sandbox;
      sandbox = undefined;
      stopped = false;
      await done.destroy("installer-done");
      stopped = true;
      await publishInstall({
        installed: join(scratch, req.dir),
        staging: join(this.#opts.dir, `.staging-${req.dir}-${id}`),
        target,
        check: async (dir) => {
          const entries = await readdir(dir);
          if (!entries.some((e) => e.endsWith(".dist-info") || e.endsWith(".egg-info"))) {
            throw new DependencyInstallError(
              `lambda ${lambda}: installing ${pin} with pip left no package metadata: ${summarise(lines)}`,
            );
          }
        },
      });
    } catch (error) {
      throw error instanceof DependencyInstallError
        ? error
        : new DependencyInstallError(
            `lambda ${lambda}: the installer for ${pin} failed: ${(error as Error).message}`,
            { cause: error },
          );
    } finally {
      if (sandbox) {
        stopped = await sandbox.destroy("installer-done").then(
          () => true,
          () => false,
        );
      }
      if (stopped) await rm(scratch, { recursive: true, force: true }).catch(() => {});
    }
    this.#log.info(
      { lambda, package: pin, ms: Math.round(performance.now() - started) },
      "Python package installed",
    );
    return target;
  }
}

/** pip's ERROR lines (what failed), or its last lines. */
function summarise(lines: readonly string[]): string {
  return summariseFailure(lines, /^\s*(ERROR:|error:)/i, "pip");
}
