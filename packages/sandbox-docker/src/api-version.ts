/** Oldest Engine API this backend speaks: one-shot stats need 1.41 (Docker 20.10). */
export const MIN_API_VERSION = "1.41";
/**
 * Newest API this backend was written against. A newer engine is asked for this version (the
 * engine keeps old versions' behaviour), an older one (>= MIN) for its own.
 */
export const MAX_API_VERSION = "1.47";

/** Compares two `major.minor` API versions. */
export function compareApiVersions(a: string, b: string): number {
  const [aMajor = 0, aMinor = 0] = a.split(".").map(Number);
  const [bMajor = 0, bMinor = 0] = b.split(".").map(Number);
  return aMajor - bMajor || aMinor - bMinor;
}

/**
 * The API version to use with an engine that speaks `engine` (and nothing older than
 * `engineMin`), or `undefined` when the two ranges do not meet.
 */
export function negotiateApiVersion(engine: string, engineMin?: string): string | undefined {
  const chosen = compareApiVersions(engine, MAX_API_VERSION) < 0 ? engine : MAX_API_VERSION;
  if (compareApiVersions(chosen, MIN_API_VERSION) < 0) return undefined;
  if (engineMin && compareApiVersions(chosen, engineMin) < 0) return undefined;
  return chosen;
}
