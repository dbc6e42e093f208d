/**
 * Labels put on every container (and base image) this backend makes. Cleanup and
 * force-cleanup find what to remove by these labels alone, so they must never change meaning.
 */
export const LABEL_MANAGED = "org.openlambda.managed";
/** The worker's identity: `forceCleanup({ workerId })` removes what one (dead) worker left. */
export const LABEL_WORKER = "org.openlambda.worker";
/** One `dockerBackend()` value: `cleanup()` removes exactly what that value made. */
export const LABEL_INSTANCE = "org.openlambda.backend-instance";
export const LABEL_SANDBOX = "org.openlambda.sandbox";
/** Set only when the backend made the scratch dir itself, so force-cleanup may delete it. */
export const LABEL_OWNED_SCRATCH = "org.openlambda.owned-scratch";
/** On base images: the content hash of the base directory the image was imported from. */
export const LABEL_BASE_HASH = "org.openlambda.base-hash";

/** `filters` query value of the Engine API's list endpoints, for label selectors. */
export function labelFilter(labels: Readonly<Record<string, string | true>>): string {
  const label = Object.entries(labels).map(([k, v]) => (v === true ? k : `${k}=${v}`));
  return JSON.stringify({ label });
}
