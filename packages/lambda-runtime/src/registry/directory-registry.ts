import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { cp, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { type Logger, silentLogger } from "@openlambda/sandbox-core";
import type { LambdaConfig, RegistryApi } from "../contracts.js";
import { ArchiveTooLargeError, BadArchiveError, LambdaNotFoundError } from "../errors.js";
import { type LimitMaxima, parseLambdaConfig } from "../lambda-config.js";
import { compileTypeScript } from "../prepare/typescript.js";
import { parseRequirements } from "../python/requirements.js";
import { type CodeLease, CodeStore, type CodeStoreEvent } from "./code-store.js";
import { assertLambdaName, isValidLambdaName } from "./names.js";
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
  /**
   * The worker's bounds on ol.yaml limits (`lambdaLimitMaxima(config)`): an upload over them
   * is refused, and so is a lambda whose stored ol.yaml is over them when it is first read.
   */
  readonly limitMaxima?: LimitMaxima;
  /** Told when a code directory could not be removed. */
  readonly logger?: Logger;
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

/** What init() may remove from the code cache: what this class makes there. */
const TEMP_PREFIXES = [".extract-", ".copy-"];

const ENTRY_FILES = ["f.js", "f.mjs", "f.cjs", "f.ts", "f.py"];

/**
 * The default registry: a directory. Archives are checked and extracted whole into a fresh
 * directory before they are used, so a lambda is never served half-updated; an upload that is
 * refused leaves the stored version untouched.
 *
 * Extracted versions live in `codeCacheDir/NAME/VERSION-ID/`, owned by one CodeStore: a version
 * is removed from disk once it is not the current one and nobody holds it (see acquire()).
 * Changes to a name (commit of an upload or a refresh, delete) run one at a time per name.
 */
export class DirectoryRegistry implements RegistryApi {
  readonly #opts: Required<Omit<DirectoryRegistryOptions, "limitMaxima">> &
    Pick<DirectoryRegistryOptions, "limitMaxima">;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<LambdaCode | undefined>>();
  /** The tail of each name's queue of changes. */
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #store: CodeStore;

  constructor(options: DirectoryRegistryOptions) {
    this.#opts = {
      maxArchiveBytes: 50 * 1024 * 1024,
      maxExtractedBytes: 250 * 1024 * 1024,
      maxEntries: 20_000,
      logger: silentLogger,
      ...options,
    };
    this.#store = new CodeStore((code) => this.#removeVersion(code));
  }

  /**
   * Makes the directories, and removes what an earlier run left in the code cache: nothing
   * holds those versions any more, and the current ones are extracted again on first use.
   */
  async init(): Promise<void> {
    await mkdir(this.#opts.dir, { recursive: true });
    await mkdir(this.#opts.codeCacheDir, { recursive: true });
    for (const entry of await readdir(this.#opts.codeCacheDir, { withFileTypes: true })) {
      const ours =
        isValidLambdaName(entry.name) || TEMP_PREFIXES.some((p) => entry.name.startsWith(p));
      if (!ours) continue;
      // rm never follows a symbolic link: a link here is removed, not what it points to.
      await rm(join(this.#opts.codeCacheDir, entry.name), { recursive: true, force: true });
    }
  }

  /**
   * Follows the registry: `current` when the version served for a name changes (upload,
   * delete, a change noticed on disk), `removed` when a version is dropped from disk.
   */
  on(listener: (event: CodeStoreEvent) => void): () => void {
    return this.#store.on(listener);
  }

  /**
   * The lambda's current code with a hold on it: its directory stays until the hold is
   * released, whatever is uploaded or deleted meanwhile. Release it exactly once.
   */
  async acquire(name: string): Promise<CodeLease> {
    for (let attempt = 0; ; attempt++) {
      const code = await this.get(name);
      const lease = this.#store.tryHold(code);
      if (lease) return lease;
      // Replaced and dropped between the lookup and the hold: look again (bounded, so a
      // name changing without pause cannot keep a caller here).
      if (attempt >= 3) throw notFound(name);
    }
  }

  /** Resolves when the code directories being removed are gone (tests, shutdown). */
  settled(): Promise<void> {
    return this.#store.settled();
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
      pending = this.#serial(name, () => this.#refresh(name)).finally(() =>
        this.#inflight.delete(name),
      );
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
      const config = this.#parseConfig(await readOptional(join(tmpDir, "ol.yaml")));
      await assertHasEntry(tmpDir, config.environment);
      const requirements = await readOptional(join(tmpDir, "requirements.txt"));
      if (requirements !== undefined) parseRequirements(requirements, name);
      await compileTypeScript(tmpDir);
      const version = result.sha256.slice(0, 16);
      await this.#serial(name, async () => {
        const lease = await this.#settle(name, version, tmpDir, config);
        try {
          const archive = join(this.#opts.dir, `${name}.tar.gz`);
          await rename(tmpFile, archive);
          this.#commit(name, lease.code, archiveKey(await stat(archive)));
        } finally {
          lease.release();
        }
      });
      return { name, version };
    } finally {
      await rm(tmpFile, { force: true });
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  /**
   * Deletes the lambda from the registry. Its extracted code goes once nothing holds it: at
   * once when idle, after the calls in flight otherwise.
   */
  async remove(name: string): Promise<boolean> {
    assertLambdaName(name);
    return this.#serial(name, async () => {
      const archive = join(this.#opts.dir, `${name}.tar.gz`);
      const dir = join(this.#opts.dir, name);
      const had = (await exists(archive)) || (await exists(dir));
      await rm(archive, { force: true });
      await rm(dir, { recursive: true, force: true });
      this.#cache.delete(name);
      this.#store.setCurrent(name, undefined);
      return had;
    });
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

  #parseConfig(text: string | undefined): LambdaConfig {
    return parseLambdaConfig(text, this.#opts.limitMaxima);
  }

  /** Runs `change` after every earlier change of `name` has finished. */
  #serial<T>(name: string, change: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const run = previous.then(change, change);
    const tail = run.catch(() => {});
    this.#locks.set(name, tail);
    void tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return run;
  }

  /** Makes `code` what `name` serves (undefined: nothing), as seen from `sourceKey`. */
  #commit(name: string, code: LambdaCode | undefined, sourceKey: string): void {
    this.#cache.set(name, { checkedAt: Date.now(), code, sourceKey });
    this.#store.setCurrent(name, code);
  }

  /** Under the name's lock: looks at the registry's files again and commits what it finds. */
  async #refresh(name: string): Promise<LambdaCode | undefined> {
    const cached = this.#cache.get(name);
    const archive = join(this.#opts.dir, `${name}.tar.gz`);
    const dir = join(this.#opts.dir, name);
    const archiveStat = await stat(archive).catch(() => undefined);
    let lease: CodeLease | undefined;
    let sourceKey: string;
    try {
      if (archiveStat?.isFile()) {
        sourceKey = archiveKey(archiveStat);
        if (cached?.sourceKey !== sourceKey) lease = await this.#fromArchive(name, archive);
      } else if ((await stat(dir).catch(() => undefined))?.isDirectory()) {
        sourceKey = `d:${await fingerprint(dir)}`;
        if (cached?.sourceKey !== sourceKey)
          lease = await this.#fromDirectory(name, dir, sourceKey);
      } else {
        sourceKey = "missing";
      }
      const code = lease ? lease.code : sourceKey === "missing" ? undefined : cached?.code;
      this.#commit(name, code, sourceKey);
      return code;
    } finally {
      lease?.release();
    }
  }

  /**
   * Under the name's lock: a hold on the live `name@version` when there is one (and `tmpDir`
   * is left for the caller to remove), else `tmpDir` moved into a new version directory.
   */
  async #settle(
    name: string,
    version: string,
    tmpDir: string,
    config: LambdaConfig,
  ): Promise<CodeLease> {
    const live = this.#store.find(name, version);
    const held = live && this.#store.tryHold(live);
    if (held) return held;
    const parent = join(this.#opts.codeCacheDir, name);
    // A fresh name per extraction: a version still being removed never collides with its
    // new copy, and nothing outside this class could have made the directory.
    const dir = join(parent, `${version}-${randomUUID().slice(0, 8)}`);
    await mkdir(parent, { recursive: true, mode: 0o755 });
    await rename(tmpDir, dir);
    return this.#store.adopt({ name, version, dir, config }, true);
  }

  /** Removes a dropped version's directory, and its lambda's directory once empty. */
  async #removeVersion(code: LambdaCode): Promise<void> {
    await this.#serial(code.name, async () => {
      try {
        await rm(code.dir, { recursive: true, force: true });
        await rmdir(join(this.#opts.codeCacheDir, code.name)).catch(() => {});
      } catch (error) {
        this.#opts.logger.warn(
          { lambda: code.name, version: code.version, dir: code.dir, err: error },
          "could not remove an old code version",
        );
      }
    });
  }

  /**
   * A plain directory is served in place, unless it must be built (f.ts) or get dependencies
   * (package.json): then a copy in the code cache is, so the operator's directory is never written.
   */
  async #fromDirectory(name: string, dir: string, sourceKey: string): Promise<CodeLease> {
    const version = createHash("sha256").update(sourceKey).digest("hex").slice(0, 16);
    const config = this.#parseConfig(await readOptional(join(dir, "ol.yaml")));
    const live = this.#store.find(name, version);
    const held = live && this.#store.tryHold(live);
    if (held) return held;
    if (!(await exists(join(dir, "f.ts"))) && !(await exists(join(dir, "package.json")))) {
      // Served in place: the operator's directory, which the store never removes.
      return this.#store.adopt({ name, version, dir, config }, false);
    }
    const tmpDir = join(this.#opts.codeCacheDir, `.copy-${randomUUID().slice(0, 8)}`);
    try {
      await cp(dir, tmpDir, { recursive: true, verbatimSymlinks: true });
      await compileTypeScript(tmpDir);
      return await this.#settle(name, version, tmpDir, config);
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  async #fromArchive(name: string, archive: string): Promise<CodeLease> {
    const version = (await sha256File(archive)).slice(0, 16);
    const live = this.#store.find(name, version);
    const held = live && this.#store.tryHold(live);
    if (held) return held;
    const tmpDir = join(this.#opts.codeCacheDir, `.extract-${randomUUID().slice(0, 8)}`);
    try {
      await mkdir(tmpDir, { mode: 0o755 });
      await extractTarGz(createReadStream(archive), tmpDir, {
        maxExtractedBytes: this.#opts.maxExtractedBytes,
        maxEntries: this.#opts.maxEntries,
      });
      await compileTypeScript(tmpDir);
      const config = this.#parseConfig(await readOptional(join(tmpDir, "ol.yaml")));
      return await this.#settle(name, version, tmpDir, config);
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }
}

function archiveKey(s: { size: number; mtimeMs: number; ino: number }): string {
  return `a:${s.size}:${s.mtimeMs}:${s.ino}`;
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
