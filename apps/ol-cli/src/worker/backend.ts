import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { WorkerConfig } from "@openlambda/lambda-runtime";
import { type Logger, pickBackend, type SandboxBackend } from "@openlambda/sandbox-core";
import { dockerBackend, forceCleanup as dockerForceCleanup } from "@openlambda/sandbox-docker";
import {
  BASE_MANIFEST,
  sockBackend,
  forceCleanup as sockForceCleanup,
} from "@openlambda/sandbox-sock";
import type { WorkerLayout } from "./layout.js";

/** The Docker label that ties containers to one worker dir, stable across restarts. */
export function dockerWorkerId(layout: WorkerLayout): string {
  return `ol-${createHash("sha256").update(layout.dir).digest("hex").slice(0, 12)}`;
}

/** Builds the configured backend; it checks the host and says what is missing. */
export async function makeBackend(
  config: WorkerConfig,
  layout: WorkerLayout,
  logger: Logger,
): Promise<SandboxBackend> {
  return pickBackend<Promise<SandboxBackend>>(config.sandbox, {
    sock: async () =>
      sockBackend({
        workDir: layout.sock,
        baseDir: layout.base,
        features: {
          seccomp: config.features.enable_seccomp,
          downsizePausedMemory: config.features.downsize_paused_mem,
        },
        cgroupPoolSize: config.features.reuse_cgroups ? 8 : 0,
        uidRange: config.sandbox_uids,
        egress: { subnet: config.egress_subnet },
        logger,
      }),
    docker: async () => {
      const backend = dockerBackend({
        workerId: dockerWorkerId(layout),
        workDir: layout.docker,
        uidRange: config.sandbox_uids,
        logger,
        ...(config.docker.base_image
          ? { image: config.docker.base_image }
          : { baseDir: layout.base, ...baseHashOption(layout) }),
      });
      await backend.ready();
      return backend;
    },
  });
}

/**
 * The hash the base builder recorded for the base (its manifest). The Docker backend tags the
 * base's image with it, so every worker dir on a host shares one image; without it the backend
 * fingerprints the tree's metadata, which differs for every freshly built base dir, and each
 * worker dir would import its own copy (seconds per start, a gigabyte and more each).
 */
export function baseHashOption(layout: WorkerLayout): { baseHash?: string } {
  try {
    const manifest = JSON.parse(readFileSync(join(layout.base, BASE_MANIFEST), "utf8")) as {
      hash?: unknown;
    };
    return typeof manifest.hash === "string" && manifest.hash !== ""
      ? { baseHash: manifest.hash }
      : {};
  } catch {
    return {};
  }
}

export interface CleanupReport {
  readonly backend: string;
  readonly removed: Readonly<Record<string, number>>;
}

/** Removes what a worker on this dir left behind (after a crash or SIGKILL), for its backend. */
export async function cleanupLeftovers(
  config: WorkerConfig,
  layout: WorkerLayout,
  logger: Logger,
): Promise<CleanupReport> {
  if (config.sandbox === "docker") {
    const result = await dockerForceCleanup({ workerId: dockerWorkerId(layout) });
    return { backend: "docker", removed: { ...result } };
  }
  const report = await sockForceCleanup(layout.sock, { logger });
  return { backend: "sock", removed: { ...report } };
}
