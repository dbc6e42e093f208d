import type { Invoker } from "@openlambda/lambda-runtime";

/**
 * An event source that turns outside events into invocations. HTTP is the first; cron and
 * queue triggers plug in the same way. `start` resolves once the trigger takes events.
 */
export interface Trigger {
  readonly name: string;
  start(invoker: Invoker): Promise<void>;
  /** Stops taking events and resolves when the events in flight are answered. */
  stop(): Promise<void>;
}
