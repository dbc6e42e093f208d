import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
} from "node:fs";
import { chmod, copyFile, link, mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { BaseBuildError } from "./errors.js";

const run = promisify(execFile);

/** Bumped whenever the layout below changes, so existing bases are rebuilt. */
const BUILDER_VERSION = 1;
export const BASE_MANIFEST = ".ol-base.json";

/** Directories every sandbox mounts something onto; they must exist in the read-only base. */
export const BASE_MOUNTPOINTS = ["handler", "host", "packages", "tmp", "proc", "dev"] as const;

/** Host paths that never enter a base, whatever the options say. */
const FORBIDDEN = ["/root", "/home", "/etc", "/proc", "/sys", "/dev", "/run", "/var", "/tmp"];

export interface BuildBaseOptions {
  /** Where the base goes. Rebuilt only when its inputs changed (see `.ol-base.json`). */
  readonly dir: string;
  /** The node binary exposed as `node` on PATH (`/usr/local/bin/node`); default `process.execPath`. */
  readonly nodeBinary?: string;
  /** A python3 under /usr; default `/usr/bin/python3` when present. Others are skipped, noted. */
  readonly pythonBinary?: string;
  readonly onProgress?: (message: string) => void;
  /** Rebuild even when the manifest's hash matches. */
  readonly force?: boolean;
}

export interface BaseRootfs {
  readonly dir: string;
  readonly hash: string;
}

interface Plan {
  readonly dir: string;
  readonly node: string;
  readonly python: string | undefined;
  /** Host directories mirrored into the base at the same path. */
  readonly trees: readonly string[];
  /** Top-level symlinks of a merged-/usr host (`/bin -> usr/bin`), recreated as they are. */
  readonly links: readonly { path: string; target: string }[];
  readonly notes: readonly string[];
}

/**
 * Assembles a root filesystem from the host, offline, in about a second: the runtime parts of
 * `/usr` (binaries, the multiarch libraries, python's standard library, zoneinfo, certificates),
 * the top-level `/bin`, `/sbin`, `/lib*`, a generated minimal `/etc`, and the node binary at
 * `/usr/local/bin/node`. Files are hard-linked when the base is on the host's filesystem (a
 * sandbox mounts the base read-only, so a link is as safe as a copy), copied otherwise.
 * Never included: `/root`, `/home`, the host's `/etc` (so no shadow file, no ssh keys, no TLS
 * private keys), `/usr/local` (host-specific tools), and the base's own directory.
 */
export async function buildBaseRootfs(options: BuildBaseOptions): Promise<BaseRootfs> {
  const progress = options.onProgress ?? (() => {});
  const started = performance.now();
  const plan = planBase(options);
  for (const note of plan.notes) progress(note);
  const hash = hashInputs(plan);
  const manifestPath = join(plan.dir, BASE_MANIFEST);
  if (!options.force && readManifestHash(manifestPath) === hash) {
    progress(`base ${plan.dir} is up to date (${hash.slice(0, 12)})`);
    return { dir: plan.dir, hash };
  }

  const staging = `${plan.dir}.building-${process.pid}-${randomBytes(3).toString("hex")}`;
  try {
    await mkdir(staging, { recursive: true, mode: 0o755 });
    const mode = await linkOrCopyMode(plan.node, staging);
    progress(`assembling base in ${staging} (${mode === "link" ? "hard links" : "copies"})`);
    for (const tree of plan.trees) {
      const target = join(staging, tree);
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      await mirror(tree, dirname(target), mode);
      progress(`added ${tree}`);
    }
    for (const { path, target } of plan.links) await symlink(target, join(staging, path));
    const nodeTarget = join(staging, "usr/local/bin/node");
    await mkdir(dirname(nodeTarget), { recursive: true, mode: 0o755 });
    // A hard link shares the host binary's inode: only a copy may have its mode changed.
    if ((await placeFile(plan.node, nodeTarget, mode)) === "copy") await chmod(nodeTarget, 0o755);
    progress(`added node from ${plan.node}`);
    if (plan.python) {
      await symlink(plan.python, join(staging, "usr/local/bin/python3"));
      progress(`added python3 (${plan.python})`);
    }
    await writeEtc(staging);
    for (const dir of BASE_MOUNTPOINTS) {
      await mkdir(join(staging, dir), { recursive: true, mode: dir === "tmp" ? 0o1777 : 0o755 });
    }
    await chmod(join(staging, "tmp"), 0o1777);
    await mkdir(join(staging, "var"), { mode: 0o755 });
    await symlink("/tmp", join(staging, "var/tmp"));
    const manifest = {
      hash,
      builder: BUILDER_VERSION,
      builtAt: new Date().toISOString(),
      mode,
      node: plan.node,
      python: plan.python ?? null,
      trees: plan.trees,
      notes: plan.notes,
    };
    await writeFile(join(staging, BASE_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await chmod(staging, 0o755);
    await swapInto(staging, plan.dir, hash);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (error instanceof BaseBuildError) throw error;
    throw new BaseBuildError(`building the base in ${plan.dir} failed: ${describe(error)}`, {
      cause: error,
    });
  }
  progress(`base ${plan.dir} ready in ${Math.round(performance.now() - started)} ms`);
  return { dir: plan.dir, hash };
}

/** Reads the hash a base was built with, or undefined when there is no valid manifest. */
export function readManifestHash(manifestPath: string): string | undefined {
  try {
    const parsed = JSON.parse(readFileSync(manifestPath, "utf8")) as { hash?: unknown };
    return typeof parsed.hash === "string" ? parsed.hash : undefined;
  } catch {
    return undefined;
  }
}

function planBase(options: BuildBaseOptions): Plan {
  if (process.platform !== "linux") {
    throw new BaseBuildError(`a SOCK base is assembled from a Linux host, not ${process.platform}`);
  }
  const dir = resolve(options.dir);
  if (dir === "/" || isUnder(dir, "/usr") || isUnder(dir, "/proc") || isUnder(dir, "/sys")) {
    throw new BaseBuildError(`refusing to build a base in ${dir}`);
  }
  const notes: string[] = [];
  const node = realpathOr(options.nodeBinary ?? process.execPath);
  if (!node || !statSync(node).isFile()) {
    throw new BaseBuildError(`node binary ${options.nodeBinary ?? process.execPath} not found`);
  }

  let python: string | undefined;
  const pythonWanted = options.pythonBinary ?? "/usr/bin/python3";
  const pythonReal = realpathOr(pythonWanted);
  if (!pythonReal) {
    notes.push(`no python: ${pythonWanted} does not exist; python lambdas will not run`);
  } else if (!isUnder(pythonReal, "/usr") || isUnder(pythonReal, "/usr/local")) {
    // A python outside /usr (pyenv in /root, a venv in /home) drags its private tree along,
    // which must not enter a sandbox.
    notes.push(`no python: ${pythonReal} is outside /usr (only the system python3 is used)`);
  } else {
    python = pythonReal;
  }

  const trees: string[] = [];
  const add = (path: string) => {
    if (existsSync(path) && !FORBIDDEN.some((f) => isUnder(path, f)) && !isUnder(dir, path)) {
      trees.push(path);
    }
  };
  for (const d of ["/usr/bin", "/usr/sbin", "/usr/lib64", "/usr/lib32", "/usr/libexec"]) add(d);
  for (const name of safeReaddir("/usr/lib")) {
    // The multiarch library dirs, python's standard library and dist-packages, locales.
    if (/-linux-gnu/.test(name) || /^python3(\.\d+)?$/.test(name) || name === "locale") {
      add(join("/usr/lib", name));
    }
  }
  for (const d of ["/usr/share/zoneinfo", "/usr/share/ca-certificates"]) add(d);

  const links: { path: string; target: string }[] = [];
  for (const top of ["bin", "sbin", "lib", "lib64", "lib32", "libx32"]) {
    const path = `/${top}`;
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(path);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      const target = readlinkSyncSafe(path);
      if (target) links.push({ path: top, target });
    } else if (st.isDirectory()) {
      add(path);
    }
  }
  return { dir, node, python, trees, links, notes };
}

/** What decides whether a base must be rebuilt: cheap to compute, changes with the host. */
function hashInputs(plan: Plan): string {
  const fileId = (path: string | undefined) => {
    if (!path) return null;
    try {
      const st = statSync(path);
      return { path, size: st.size, mtimeMs: Math.trunc(st.mtimeMs) };
    } catch {
      return { path, missing: true };
    }
  };
  const inputs = {
    builder: BUILDER_VERSION,
    node: fileId(plan.node),
    python: fileId(plan.python),
    // A directory's mtime changes when entries come or go; dpkg's status when packages change.
    trees: plan.trees.map(fileId),
    links: plan.links,
    dpkg: fileId("/var/lib/dpkg/status"),
    certs: fileId("/etc/ssl/certs/ca-certificates.crt"),
    ldcache: fileId("/etc/ld.so.cache"),
    resolv: resolvLines(),
  };
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex");
}

async function linkOrCopyMode(probe: string, staging: string): Promise<"link" | "copy"> {
  const target = join(staging, ".link-probe");
  try {
    await link(probe, target);
    await rm(target);
    return "link";
  } catch {
    return "copy";
  }
}

/** Mirrors `src` into `destParent` (GNU cp: hard links or reflink-or-copy, keeping attributes). */
async function mirror(src: string, destParent: string, mode: "link" | "copy"): Promise<void> {
  const args = mode === "link" ? ["-a", "--link"] : ["-a", "--reflink=auto"];
  try {
    await run("cp", [...args, src, `${destParent}/`], { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    throw new BaseBuildError(`copying ${src} failed: ${describe(error)}`, { cause: error });
  }
}

async function placeFile(
  src: string,
  dest: string,
  mode: "link" | "copy",
): Promise<"link" | "copy"> {
  if (mode === "link") {
    try {
      await link(src, dest);
      return "link";
    } catch {
      // A file on another filesystem than the probe: copy it instead.
    }
  }
  await copyFile(src, dest);
  return "copy";
}

/** A minimal /etc: generated, never copied wholesale from the host. */
async function writeEtc(root: string): Promise<void> {
  const etc = join(root, "etc");
  await mkdir(join(etc, "ssl/certs"), { recursive: true, mode: 0o755 });
  const files: Record<string, string> = {
    passwd: [
      "root:x:0:0:root:/nonexistent:/usr/sbin/nologin",
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
      "",
    ].join("\n"),
    group: ["root:x:0:", "nogroup:x:65534:", ""].join("\n"),
    hosts: ["127.0.0.1 localhost sandbox", "::1 localhost ip6-localhost ip6-loopback", ""].join(
      "\n",
    ),
    "resolv.conf": `${resolvLines().join("\n")}\n`,
    "nsswitch.conf": [
      "passwd: files",
      "group: files",
      "shadow: files",
      "hosts: files dns",
      "networks: files",
      "protocols: files",
      "services: files",
      "",
    ].join("\n"),
    hostname: "sandbox\n",
    "os-release": 'NAME="OpenLambda SOCK base"\nID=ol-sock-base\n',
  };
  for (const [name, text] of Object.entries(files)) {
    await writeFile(join(etc, name), text, { mode: 0o644 });
  }
  // Not secrets: the dynamic linker's cache, the public CA bundle, openssl's defaults.
  const copies: [string, string][] = [
    ["/etc/ld.so.cache", "ld.so.cache"],
    ["/etc/ssl/certs/ca-certificates.crt", "ssl/certs/ca-certificates.crt"],
    ["/etc/ssl/openssl.cnf", "ssl/openssl.cnf"],
    ["/etc/protocols", "protocols"],
    ["/etc/services", "services"],
    ["/etc/mime.types", "mime.types"],
  ];
  for (const [from, to] of copies) {
    const real = realpathOr(from);
    if (real && statSync(real).isFile()) await copyFile(real, join(etc, to));
  }
  if (existsSync(join(etc, "ssl/certs/ca-certificates.crt"))) {
    await symlink("certs/ca-certificates.crt", join(etc, "ssl/cert.pem"));
  }
  await symlink("/usr/share/zoneinfo/UTC", join(etc, "localtime"));
}

/** The host's resolver settings, nothing else from its resolv.conf. */
function resolvLines(): string[] {
  try {
    return readFileSync("/etc/resolv.conf", "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => /^(nameserver|search|domain|options)\s/.test(l));
  } catch {
    return [];
  }
}

/** Puts the staged base in place; a concurrent builder that finished first with the same hash wins. */
async function swapInto(staging: string, dir: string, hash: string): Promise<void> {
  await mkdir(dirname(dir), { recursive: true });
  const old = `${dir}.old-${process.pid}-${randomBytes(3).toString("hex")}`;
  let moved = false;
  try {
    await rename(dir, old);
    moved = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  try {
    await rename(staging, dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (
      (code === "ENOTEMPTY" || code === "EEXIST") &&
      readManifestHash(join(dir, BASE_MANIFEST)) === hash
    ) {
      await rm(staging, { recursive: true, force: true });
    } else {
      throw error;
    }
  }
  // Sandboxes still running on the old base keep their mounts; the files go when they do.
  if (moved) await rm(old, { recursive: true, force: true });
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function realpathOr(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

function readlinkSyncSafe(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function describe(error: unknown): string {
  if (error && typeof error === "object" && "stderr" in error && error.stderr) {
    return String(error.stderr).trim().split("\n").slice(0, 3).join("; ");
  }
  return error instanceof Error ? error.message : String(error);
}
