import { UnknownBackendError } from "./errors.js";

/**
 * Chooses one of the caller's backend factories by name. There is no global registry: the
 * caller (the CLI, or a platform) lists what it has installed.
 */
export function pickBackend<T>(name: string, factories: Readonly<Record<string, () => T>>): T {
  const factory = Object.hasOwn(factories, name) ? factories[name] : undefined;
  if (!factory) {
    const known = Object.keys(factories).join(", ") || "none";
    throw new UnknownBackendError(`unknown sandbox backend "${name}" (available: ${known})`);
  }
  return factory();
}
