import type { LambdaCode } from "./directory-registry.js";

/**
 * A hold on one version of a lambda's code: while any hold is out, the version's directory
 * stays on disk. Whoever runs or prepares code holds it (a call, a function, an instance).
 */
export interface CodeLease {
  readonly code: LambdaCode;
  /** Whether this version is still the one the registry serves for its name. */
  readonly current: boolean;
  /** A further hold on the same version, given back on its own. */
  retain(): CodeLease;
  /** Gives the hold back. Only the first call counts. */
  release(): void;
}

export type CodeStoreEvent =
  /** The version the registry serves for `name` changed (a new one, or none: deleted). */
  | { readonly type: "current"; readonly name: string }
  /** A version is no longer held nor current; its directory is being removed. */
  | { readonly type: "removed"; readonly code: LambdaCode };

interface Version {
  readonly code: LambdaCode;
  /** The store removes the dir; false for a registry dir served in place (the operator's). */
  readonly owned: boolean;
  holds: number;
  current: boolean;
  gone: boolean;
}

/**
 * The single owner of extracted code directories. A version's directory is removed once it is
 * neither the registry's current version of its lambda nor held by anyone: after a delete, and
 * after an update once the old version's instances have drained. Holds are counted, so that no
 * holder has to know about the others; a version being removed can never be held again.
 */
export class CodeStore {
  readonly #versions = new Map<LambdaCode, Version>();
  /** Live (not gone) versions by `name@version`: at most one, so a version is extracted once. */
  readonly #live = new Map<string, Version>();
  readonly #current = new Map<string, Version>();
  readonly #removals = new Set<Promise<void>>();
  readonly #listeners = new Set<(event: CodeStoreEvent) => void>();
  readonly #remove: (code: LambdaCode) => Promise<void>;

  /** `remove` deletes a version's directory (the registry's; never called for unowned ones). */
  constructor(remove: (code: LambdaCode) => Promise<void>) {
    this.#remove = remove;
  }

  on(listener: (event: CodeStoreEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The live version `name@version`, to reuse rather than extract again. */
  find(name: string, version: string): LambdaCode | undefined {
    return this.#live.get(`${name}@${version}`)?.code;
  }

  /**
   * Takes charge of a new version's directory and hands back the first hold on it. The caller
   * makes it current or releases the hold (then the directory goes).
   */
  adopt(code: LambdaCode, owned: boolean): CodeLease {
    const key = `${code.name}@${code.version}`;
    if (this.#live.has(key)) throw new Error(`code store: ${key} is already live`);
    const version: Version = { code, owned, holds: 0, current: false, gone: false };
    this.#versions.set(code, version);
    this.#live.set(key, version);
    return this.#hold(version);
  }

  /** A hold on `code`, or undefined when that version is gone (or was never this store's). */
  tryHold(code: LambdaCode): CodeLease | undefined {
    const version = this.#versions.get(code);
    return version && !version.gone ? this.#hold(version) : undefined;
  }

  /** Makes `code` the version served for `name` (undefined: none); the previous one may go. */
  setCurrent(name: string, code: LambdaCode | undefined): void {
    const next = code === undefined ? undefined : this.#versions.get(code);
    if (code !== undefined && (next === undefined || next.gone)) {
      throw new Error(`code store: ${name}@${code.version} is not live`);
    }
    const previous = this.#current.get(name);
    if (previous === next) return;
    if (next) {
      next.current = true;
      this.#current.set(name, next);
    } else {
      this.#current.delete(name);
    }
    if (previous) {
      previous.current = false;
      this.#dropIfUnused(previous);
    }
    this.#emit({ type: "current", name });
  }

  /** Resolves when every removal started so far has finished. */
  async settled(): Promise<void> {
    while (this.#removals.size > 0) await Promise.all([...this.#removals]);
  }

  #hold(version: Version): CodeLease {
    version.holds++;
    let released = false;
    const lease: CodeLease = {
      code: version.code,
      get current() {
        return version.current;
      },
      retain: () => {
        if (released) throw new Error("code store: retain() on a released hold");
        return this.#hold(version);
      },
      release: () => {
        if (released) return;
        released = true;
        version.holds--;
        this.#dropIfUnused(version);
      },
    };
    return lease;
  }

  #dropIfUnused(version: Version): void {
    if (version.gone || version.current || version.holds > 0) return;
    version.gone = true;
    this.#versions.delete(version.code);
    this.#live.delete(`${version.code.name}@${version.code.version}`);
    this.#emit({ type: "removed", code: version.code });
    if (!version.owned) return;
    // The remover reports its own failures; a rejection must not go unhandled here.
    const removal = this.#remove(version.code)
      .catch(() => {})
      .finally(() => this.#removals.delete(removal));
    this.#removals.add(removal);
  }

  #emit(event: CodeStoreEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}
