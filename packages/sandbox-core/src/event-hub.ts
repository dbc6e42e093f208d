import { channels, type SandboxEventMessage } from "./diagnostics.js";
import type { SandboxEvent, SandboxEventListener } from "./types.js";

/** The `on(listener)` half of a backend, plus publishing on `ol:sandbox:event`. */
export class SandboxEventHub {
  readonly #backend: string;
  readonly #listeners = new Set<SandboxEventListener>();

  constructor(backendName: string) {
    this.#backend = backendName;
  }

  on(listener: SandboxEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  readonly emit = (event: SandboxEvent): void => {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure must not break the sandbox lifecycle that emitted the event.
      }
    }
    if (channels.sandboxEvent.hasSubscribers) {
      channels.sandboxEvent.publish({
        backend: this.#backend,
        event,
      } satisfies SandboxEventMessage);
    }
  };
}
