import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { cp, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LambdaConfig, RegistryApi } from "../contracts.js";
import { ArchiveTooLargeError, BadArchiveError, LambdaNotFoundError } from "../errors.js";
import { parseLambdaConfig } from "../lambda-config.js";
import { compileTypeScript } from "../prepare/typescript.js";
import { parseRequirements } from "../python/requirements.js";
import { assertLambdaName } from "./names.js";
import { extractTarGz } from "./tar-extract.js";

export interface DirectoryRegistryOptions {
  /** The registry: NAME.tar.gz files and plain NAME directories. */
  readonly dir: string;
  /** Where extracted code versions are kept (one dir per name and content hash). */
  readonly codeCacheDir: string;
  /** How stale a cached lookup may be, ms (OpenLambda's registry_cache_ms). */
  readonly cacheMs: number;
  readonly maxArchiveBytes?: number;
  readonly maxExtractedBytes?: number;
  readonly maxEntries?: number;
}

/** One immutable version of a lambda's code. */
export interface LambdaCode {
  readonly name: string;
  /** Content hash for archives; a fingerprint of names, sizes and mtimes for plain dirs. */
  readonly version: string;
  /** Host directory holding the code (read-only to the lambda). */
  readonly dir: string;
  readonly config: LambdaConfig;
}

interface CacheEntry {
  readonly checkedAt: number;
  readonly code: LambdaCode | undefined;
  readonly sourceKey: string;
}

const ENTRY_FILES = ["f.js", "f.mjs", "f.cjs", "f.ts", "f.py"];

/**
 * The default registry: a directory. Archives are checked and extracted whole into a fresh
 * directory before they are used, so a lambda is never served half-updated; an upload that is
 * refused leaves the stored version untouched.
 */
export class DirectoryRegistry implements RegistryApi {
  readonly #opts: Required<DirectoryRegistryOptions>;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<LambdaCode | undefined>>();

  constructor(options: DirectoryRegistryOptions) {
    this.#opts = {
      maxArchiveBytes: 50 * 1024 * 1024,
      maxExtractedBytes: 250 * 1024 * 1024,
      maxEntries: 20_000,
      ...options,
    };
  }

  async init(): Promise<void> {
    await mkdir(this.#opts.dir, { recursive: true });
    await mkdir(this.#opts.codeCacheDir, { recursive: true });
  }

  /** The lambda's current code, looked up again when the cached answer is older than cacheMs. */
  async get(name: string): Promise<LambdaCode> {
    assertLambdaName(name);
    const cached = this.#cache.get(name);
    if (cached && Date.now() - cached.checkedAt < this.#opts.cacheMs) {
      if (!cached.code) throw notFound(name);
      return cached.code;
    }
    let pending = this.#inflight.get(name);
    if (!pending) {
      pending = this.#refresh(name, cached).finally(() => this.#inflight.delete(name));
      this.#inflight.set(name, pending);
    }
    const code = await pending;
    if (!code) throw notFound(name);
    return code;
  }

  async list(): Promise<string[]> {
    const names = new Set<string>();
    for (const entry of await readdir(this.#opts.dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".")) continue;
      if (entry.isFile() && entry.name.endsWith(".tar.gz")) names.add(entry.name.slice(0, -7));
      else if (entry.isDirectory()) names.add(entry.name);
    }
    return [...names].sort();
  }

  async config(name: string): Promise<LambdaConfig> {
    return (await this.get(name)).config;
  }

  async upload(
    name: string,
    archive: AsyncIterable<Uint8Array>,
  ): Promise<{ name: string; version: string }> {
    assertLambdaName(name);
    const id = randomUUID().slice(0, 8);
    const tmpFile = join(this.#opts.dir, `.${name}.upload-${id}`);
    const tmpDir = join(this.#opts.codeCacheDir, `.extract-${id}`);
    try {
      await this.#receive(archive, tmpFile);
      await mkdir(tmpDir, { mode: 0o755 });
      const result = await extractTarGz(createReadStream(tmpFile), tmpDir, {
        maxExtractedBytes: this.#opts.maxExtractedBytes,
        maxEntries: this.#opts.maxEntries,
      });
      // Parsing ol.yaml and compiling TypeScript now refuse a bad lambda at upload, not at first call.
      const config = parseLambdaConfig(await readOptional(join(tmpDir, "ol.yaml")));
      await assertHasEntry(tmpDir, config.environment);
      const requirements = await readOptional(join(tmpDir, "requirements.txt"));
      if (requirements !== undefined) parseRequirements(requirements, name);
      await compileTypeScript(tmpDir);
      const version = result.sha256.slice(0, 16);
      const finalDir = join(this.#opts.codeCacheDir, name, version);
      await mkdir(join(this.#opts.codeCacheDir, name), { recursive: true });
      if (await exists(finalDir)) await rm(tmpDir, { recursive: true, force: true });
      else await rename(tmpDir, finalDir);
      await rename(tmpFile, join(this.#opts.dir, `${name}.tar.gz`));
      this.#cache.delete(name);
      return { name, version };
    } finally {
      await rm(tmpFile, { force: true });
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  async remove(name: string): Promise<boolean> {
    assertLambdaName(name);
    const archive = join(this.#opts.dir, `${name}.tar.gz`);
    const dir = join(this.#opts.dir, name);
    const had = (await exists(archive)) || (await exists(dir));
    await rm(archive, { force: true });
    await rm(dir, { recursive: true, force: true });
    this.#cache.delete(name);
    return had;
  }

  /** Removes extracted versions of `name` other than `keep`. */
  async prune(name: string, keep: ReadonlySet<string>): Promise<void> {
    const base = join(this.#opts.codeCacheDir, name);
    const versions = await readdir(base).catch(() => [] as string[]);
    await Promise.all(
      versions
        .filter((v) => !keep.has(v))
        .map((v) => rm(join(base, v), { recursive: true, force: true })),
    );
  }

  async #receive(archive: AsyncIterable<Uint8Array>, file: string): Promise<void> {
    const handle = await open(file, "wx", 0o600);
    let total = 0;
    try {
      for await (const chunk of archive) {
        total += chunk.length;
        if (total > this.#opts.maxArchiveBytes) {
          throw new ArchiveTooLargeError(`archive: over ${this.#opts.maxArchiveBytes} bytes`);
        }
        await handle.write(chunk);
      }
    } finally {
      await handle.close();
    }
    if (total === 0) throw new BadArchiveError("archive: the upload is empty");
  }

  async #refresh(name: string, cached: CacheEntry | undefined): Promise<LambdaCode | undefined> {
    const archive = join(this.#opts.dir, `${name}.tar.gz`);
    const dir = join(this.#opts.dir, name);
    const archiveStat = await stat(archive).catch(() => undefined);
    let code: LambdaCode | undefined;
    let sourceKey: string;
    if (archiveStat?.isFile()) {
      sourceKey = `a:${archiveStat.size}:${archiveStat.mtimeMs}:${archiveStat.ino}`;
      code = cached?.sourceKey === sourceKey ? cached.code : await this.#fromArchive(name, archive);
    } else if ((await stat(dir).catch(() => undefined))?.isDirectory()) {
      sourceKey = `d:${await fingerprint(dir)}`;
      code =
        cached?.sourceKey === sourceKey
          ? cached.code
          : await this.#fromDirectory(name, dir, sourceKey);
    } else {
      sourceKey = "missing";
    }
    this.#cache.set(name, { checkedAt: Date.now(), code, sourceKey });
    return code;
  }

  /**
   * A plain directory is served in place, unless it must be built (f.ts) or get dependencies
   * (package.json): then a copy in the code cache is, so the operator's directory is never written.
   */
  async #fromDirectory(name: string, dir: string, sourceKey: string): Promise<LambdaCode> {
    const version = createHash("sha256").update(sourceKey).digest("hex").slice(0, 16);
    const config = parseLambdaConfig(await readOptional(join(dir, "ol.yaml")));
    if (!(await exists(join(dir, "f.ts"))) && !(await exists(join(dir, "package.json")))) {
      return { name, version, dir, config };
    }
    const finalDir = join(this.#opts.codeCacheDir, name, version);
    if (!(await exists(finalDir))) {
      const tmpDir = join(this.#opts.codeCacheDir, `.copy-${randomUUID().slice(0, 8)}`);
      try {
        await cp(dir, tmpDir, { recursive: true, verbatimSymlinks: true });
        await compileTypeScript(tmpDir);
        await mkdir(join(this.#opts.codeCacheDir, name), { recursive: true });
        await rename(tmpDir, finalDir).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
        });
      } finally {
        await rm(tmpDir, { recursive: true, force: true });
      }
    }
    return { name, version, dir: finalDir, config };
  }

  async #fromArchive(name: string, archive: string): Promise<LambdaCode> {
    const version = (await sha256File(archive)).slice(0, 16);
    const finalDir = join(this.#opts.codeCacheDir, name, version);
    if (!(await exists(finalDir))) {
      const tmpDir = join(this.#opts.codeCacheDir, `.extract-${randomUUID().slice(0, 8)}`);
      try {
        await mkdir(tmpDir, { mode: 0o755 });
        await extractTarGz(createReadStream(archive), tmpDir, {
          maxExtractedBytes: this.#opts.maxExtractedBytes,
          maxEntries: this.#opts.maxEntries,
        });
        await compileTypeScript(tmpDir);
        await mkdir(join(this.#opts.codeCacheDir, name), { recursive: true });
        await rename(tmpDir, finalDir).catch(async (error: NodeJS.ErrnoException) => {
          // Another refresh extracted the same version first: theirs is identical.
          if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
        });
      } finally {
        await rm(tmpDir, { recursive: true, force: true });
      }
    }
    return {
      name,
      version,
      dir: finalDir,
      config: parseLambdaConfig(await readOptional(join(finalDir, "ol.yaml"))),
    };
  }
}

function notFound(name: string): LambdaNotFoundError {
  return new LambdaNotFoundError(`no lambda named ${JSON.stringify(name)} in the registry`);
}

async function assertHasEntry(dir: string, env: Readonly<Record<string, string>>): Promise<void> {
  const names = new Set(await readdir(dir));
  // A Python lambda may name its module with OL_ENTRY_FILE (OpenLambda's variable).
  const pythonEntry = env.OL_ENTRY_FILE;
  if (pythonEntry !== undefined && names.has(pythonEntry)) return;
  if (!ENTRY_FILES.some((f) => names.has(f))) {
    throw new BadArchiveError(
      `archive: no entry file at its root (expected one of ${ENTRY_FILES.join(", ")})`,
    );
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Names, sizes and mtimes of every file under `dir`: cheap change detection for plain dirs. */
async function fingerprint(dir: string): Promise<string> {
  const parts: string[] = [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const s = await stat(path);
    parts.push(`${path.slice(dir.length)}:${s.size}:${s.mtimeMs}`);
  }
  return createHash("sha256").update(parts.sort().join("\n")).digest("hex");
}
