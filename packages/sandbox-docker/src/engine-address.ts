import { BackendUnavailableError } from "@openlambda/sandbox-core";

export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";

/**
 * The engine's unix socket: an explicit path wins, then `DOCKER_HOST=unix://...`, then the
 * default. Only unix sockets are spoken: a TCP engine would need TLS settings this backend does
 * not take, so it is refused with what to do instead.
 */
export function engineSocketPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return explicit;
  const host = env.DOCKER_HOST?.trim();
  if (!host) return DEFAULT_DOCKER_SOCKET;
  if (host.startsWith("unix://")) {
    const path = host.slice("unix://".length);
    if (path.startsWith("/")) return path;
  }
  throw new BackendUnavailableError(
    `DOCKER_HOST=${host} is not supported: the docker backend talks to the engine over a local unix socket only; set DOCKER_HOST=unix:///path/to/docker.sock or unset it`,
  );
}
