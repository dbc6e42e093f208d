import type { LambdaCode } from "../registry/directory-registry.js";

/**
 * Runs a preparation (a package install) once per lambda version: every caller of that version
 * waits for the same run, and a failure answers each of them until a new version is uploaded.
 * What succeeded stays readable at once, for building sandbox specs.
 */
export class OncePerVersion<T> {
  readonly #runs = new Map<string, Promise<T | undefined>>();
  readonly #done = new Map<string, T>();

  run(code: LambdaCode, prepare: () => Promise<T | undefined>): Promise<T | undefined> {
    const key = `${code.name}@${code.version}`;
    let run = this.#runs.get(key);
    if (!run) {
      run = prepare();
      this.#runs.set(key, run);
      run.then(
        (result) => result !== undefined && this.#done.set(key, result),
        () => {},
      );
    }
    return run;
  }

  /** What the version's run produced, once it has succeeded. */
  done(code: LambdaCode): T | undefined {
    return this.#done.get(`${code.name}@${code.version}`);
  }

  /**
   * Drops what is known of a version whose code left the disk: if the same version comes back
   * it is a new directory, which needs its own run (an install links into the code dir).
   */
  forget(code: LambdaCode): void {
    const key = `${code.name}@${code.version}`;
    this.#runs.delete(key);
    this.#done.delete(key);
  }
}
