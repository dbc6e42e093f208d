import { spawn } from "node:child_process";
import type { Logger } from "@openlambda/sandbox-core";
import { type DockerEngine, engineStatusOf } from "./engine-client.js";
import { DockerBaseImageError } from "./errors.js";
import { LABEL_BASE_HASH, LABEL_MANAGED } from "./labels.js";
import { treeFingerprint } from "./tree-fingerprint.js";

/** Repository of the images this backend imports from base directories. */
export const BASE_IMAGE_REPO = "openlambda-base";

/** PATH inside the image: the base builder puts node at /usr/local/bin/node. */
const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface BaseImageSource {
  /** Root filesystem to import (e.g. what `buildBaseRootfs` of sandbox-sock made). */
  readonly dir: string;
  /** The base's content hash; computed from the tree's metadata when omitted. */
  readonly hash?: string;
}

export interface BaseImageResult {
  /** `openlambda-base:<hash>` */
  readonly image: string;
  /** Whether this call imported it (false: the engine already had that tag). */
  readonly built: boolean;
}

/** The tag an image of this base gets: the hash, cut to what a tag allows. */
export function baseImageTag(hash: string): string {
  const clean = hash
    .replace(/^sha256:/, "")
    .replace(/[^A-Za-z0-9_.-]/g, "-")
    .replace(/^[.-]+/, "");
  return `${BASE_IMAGE_REPO}:${clean.slice(0, 64) || "unnamed"}`;
}

// One import per engine socket and tag at a time, however many backend values ask.
const inFlight = new Map<string, Promise<BaseImageResult>>();

/**
 * Makes sure the engine has an image of the base directory, tagged by the base's hash:
 * imported (`POST /images/create?fromSrc=-` with a tar stream of the directory) only when the
 * engine lacks that tag, i.e. when the base changed. No registry is involved.
 */
export async function ensureBaseImage(
  engine: DockerEngine,
  source: BaseImageSource,
  logger?: Logger,
): Promise<BaseImageResult> {
  const hash = source.hash ?? (await treeFingerprint(source.dir));
  const image = baseImageTag(hash);
  const key = `${engine.socketPath}\0${image}`;
  let pending = inFlight.get(key);
  if (!pending) {
    pending = importIfMissing(engine, source.dir, hash, image, logger).finally(() =>
      inFlight.delete(key),
    );
    inFlight.set(key, pending);
  }
  return pending;
}

async function importIfMissing(
  engine: DockerEngine,
  dir: string,
  hash: string,
  image: string,
  logger?: Logger,
): Promise<BaseImageResult> {
  if (await imageExists(engine, image)) return { image, built: false };
  logger?.info({ image, dir }, "importing base directory into the docker engine");
  const started = performance.now();
  // tar(1) rather than a tar writer in JS: it keeps hard links, modes, devices and long names
  // right, and this runs once per base, far from the hot path. A hard-linked base shares its
  // inodes with the host's files, so any other link made or removed meanwhile (another base
  // being built) changes their ctime: tar then says "file changed as we read it" and exits 1
  // although every byte it sent is right. Only that warning is silenced and forgiven.
  const tar = spawn(
    "tar",
    ["--numeric-owner", "--warning=no-file-changed", "-C", dir, "-cf", "-", "."],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let tarStderr = "";
  tar.stderr.setEncoding("utf8").on("data", (d: string) => {
    tarStderr = (tarStderr + d).slice(-2000);
  });
  const tarExit = new Promise<string | number>((resolve) => {
    tar.once("error", (e) => resolve(e.message));
    tar.once("close", (code, signal) => resolve(code ?? String(signal)));
  });
  const [repo, tag] = image.split(":") as [string, string];
  let progress: Buffer;
  try {
    ({ body: progress } = await engine.raw({
      method: "POST",
      path: "/images/create",
      query: {
        fromSrc: "-",
        repo,
        tag,
        changes: [
          `ENV PATH=${IMAGE_PATH}`,
          `LABEL ${LABEL_MANAGED}=true ${LABEL_BASE_HASH}=${hash}`,
        ],
      },
      body: tar.stdout,
      contentType: "application/x-tar",
      what: `import base ${dir} as ${image}`,
      timeoutMs: 0,
    }));
  } catch (error) {
    tar.kill("SIGKILL");
    await tarExit;
    throw error;
  }
  const exit = await tarExit;
  const failure =
    exit !== 0 && !(exit === 1 && tarStderr.trim() === "")
      ? `tar of ${dir} failed (${exit}): ${tarStderr.trim()}`
      : progressError(progress) && `the engine refused it: ${progressError(progress)}`;
  if (failure) {
    // An import cut short may still have been tagged; never leave a half image under the tag.
    await removeImage(engine, image).catch(() => {});
    throw new DockerBaseImageError(`importing base directory ${dir} as ${image}: ${failure}`);
  }
  logger?.info({ image, ms: Math.round(performance.now() - started) }, "imported base image");
  return { image, built: true };
}

export async function imageExists(engine: DockerEngine, image: string): Promise<boolean> {
  try {
    await engine.raw({
      method: "GET",
      path: `/images/${encodeURIComponent(image)}/json`,
      what: `inspect image ${image}`,
    });
    return true;
  } catch (error) {
    if (engineStatusOf(error) === 404) return false;
    throw error;
  }
}

export async function removeImage(engine: DockerEngine, image: string): Promise<void> {
  try {
    await engine.raw({
      method: "DELETE",
      path: `/images/${encodeURIComponent(image)}`,
      what: `remove image ${image}`,
    });
  } catch (error) {
    if (engineStatusOf(error) !== 404) throw error;
  }
}

/** The import answers 200 with a JSON progress stream; a failure is a line with "error". */
function progressError(progress: Buffer): string | undefined {
  for (const line of progress.toString("utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      const msg = JSON.parse(line) as { error?: unknown };
      if (typeof msg.error === "string") return msg.error;
    } catch {}
  }
  return undefined;
}
