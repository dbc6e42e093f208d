import { channel } from "node:diagnostics_channel";
import type { SandboxEvent } from "./types.js";

/**
 * The `node:diagnostics_channel` channels this layer publishes, declared in one place.
 * Subscribe with `diagnostics_channel.subscribe("ol:sandbox:event", fn)`.
 */
export const channels = {
  /** Every `SandboxEvent` from every backend, with the backend's name. */
  sandboxEvent: channel("ol:sandbox:event"),
} as const;

export interface SandboxEventMessage {
  readonly backend: string;
  readonly event: SandboxEvent;
}
