import type { Readable } from "node:stream";
import { BackendError, BackendUnavailableError } from "@openlambda/sandbox-core";
import { Pool } from "undici";
import { MIN_API_VERSION, negotiateApiVersion } from "./api-version.js";

export interface EngineVersion {
  /** The engine's release, e.g. `20.10.24`. */
  readonly version: string;
  /** The newest API the engine speaks. */
  readonly engineApiVersion: string;
  /** The API version this client uses with it (the path prefix). */
  readonly apiVersion: string;
}

/** Query parameters; an array repeats the key (the engine reads e.g. `changes` that way). */
export type Query = Readonly<
  Record<string, string | number | boolean | readonly string[] | undefined>
>;

export interface EngineRequest {
  readonly method: "GET" | "POST" | "DELETE" | "HEAD";
  /** Path below the version prefix, e.g. `/containers/create`. */
  readonly path: string;
  readonly query?: Query;
  /** Sent as JSON. */
  readonly json?: unknown;
  /** Sent as is (e.g. a tar stream), with `contentType`. */
  readonly body?: Readable | Buffer;
  readonly contentType?: string;
  /** Statuses besides 2xx that are answers rather than errors (e.g. 304 "already paused"). */
  readonly accept?: readonly number[];
  /** What the caller was doing, for error messages. */
  readonly what: string;
  /** 0 disables the response timeouts, for long polls like `/wait`. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** The engine's HTTP status and message, kept as the `cause` of a `BackendError`. */
export class EngineResponseError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "EngineResponseError";
    this.status = status;
  }
}

/** The engine's HTTP status behind an error from this client, if it came from a response. */
export function engineStatusOf(error: unknown): number | undefined {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return cause instanceof EngineResponseError ? cause.status : undefined;
}

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * A client of the Docker Engine API on a unix socket. One undici `Pool` (keep-alive, as many
 * connections as concurrent requests need: long polls like `/wait` each hold one).
 * The API version is negotiated once (`GET /version`) before the first versioned call.
 */
export class DockerEngine {
  readonly socketPath: string;
  readonly #pool: Pool;
  #version: Promise<EngineVersion> | undefined;
  #closed = false;

  constructor(socketPath: string) {
    this.socketPath = socketPath;
    this.#pool = new Pool("http://docker", {
      socketPath,
      keepAliveTimeout: 30_000,
      pipelining: 1,
      connect: { timeout: 5_000 },
    });
  }

  /** Checks the engine answers and speaks a new enough API; memoised until it fails. */
  version(): Promise<EngineVersion> {
    this.#version ??= this.#negotiate().catch((error: unknown) => {
      this.#version = undefined;
      throw error;
    });
    return this.#version;
  }

  async #negotiate(): Promise<EngineVersion> {
    const { status, body } = await this.#send(
      { method: "GET", path: "/version", what: "GET /version" },
      "",
    );
    let info: { Version?: string; ApiVersion?: string; MinAPIVersion?: string };
    try {
      info = JSON.parse(body.toString("utf8")) as typeof info;
    } catch {
      info = {};
    }
    if (status !== 200 || typeof info.ApiVersion !== "string") {
      throw new BackendUnavailableError(
        `${this.socketPath} answered GET /version with HTTP ${status} and no API version: is it a Docker engine? Point DOCKER_HOST at dockerd's socket`,
      );
    }
    const apiVersion = negotiateApiVersion(info.ApiVersion, info.MinAPIVersion);
    if (!apiVersion) {
      throw new BackendUnavailableError(
        `the Docker engine at ${this.socketPath} (version ${info.Version ?? "unknown"}) speaks API ${info.MinAPIVersion ?? "?"}..${info.ApiVersion}, but the docker backend needs API ${MIN_API_VERSION} or newer (Docker 20.10+): upgrade the engine (apt-get install docker.io)`,
      );
    }
    return { version: info.Version ?? "unknown", engineApiVersion: info.ApiVersion, apiVersion };
  }

  /** A versioned call whose answer is JSON (or empty: `undefined`). */
  async json<T>(req: EngineRequest): Promise<{ status: number; body: T }> {
    const { status, body } = await this.raw(req);
    const text = body.toString("utf8");
    return { status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  /** A versioned call; the answer's bytes. Non-accepted statuses throw `BackendError`. */
  async raw(req: EngineRequest): Promise<{ status: number; body: Buffer }> {
    const { apiVersion } = await this.version();
    return this.#send(req, `/v${apiVersion}`);
  }

  async #send(req: EngineRequest, prefix: string): Promise<{ status: number; body: Buffer }> {
    if (this.#closed) throw new BackendError(`docker engine client is closed (${req.what})`);
    const headers: Record<string, string> = {};
    let body: Readable | Buffer | string | undefined = req.body;
    if (req.json !== undefined) {
      body = JSON.stringify(req.json);
      headers["content-type"] = "application/json";
    } else if (req.contentType) {
      headers["content-type"] = req.contentType;
    }
    const timeout = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let res: Awaited<ReturnType<Pool["request"]>>;
    try {
      res = await this.#pool.request({
        method: req.method,
        path: `${prefix}${req.path}${queryString(req.query)}`,
        headers,
        ...(body === undefined ? {} : { body }),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } catch (error) {
      throw this.#connectionError(error, req.what);
    }
    let data: Buffer;
    try {
      data = Buffer.from(await res.body.arrayBuffer());
    } catch (error) {
      throw this.#connectionError(error, req.what);
    }
    const ok =
      (res.statusCode >= 200 && res.statusCode < 300) || req.accept?.includes(res.statusCode);
    if (!ok) {
      const message = engineMessage(data) || `HTTP ${res.statusCode}`;
      throw new BackendError(`docker engine: ${req.what}: ${message}`, {
        cause: new EngineResponseError(res.statusCode, message),
      });
    }
    return { status: res.statusCode, body: data };
  }

  /** Maps a failure to reach the engine to what the operator should do about it. */
  #connectionError(error: unknown, what: string): Error {
    if (isAbort(error)) return error as Error;
    const code = errorCode(error);
    const where = this.socketPath;
    const fix =
      code === "ENOENT"
        ? `no Docker engine socket at ${where}: install Docker (apt-get install docker.io) and start dockerd, or set DOCKER_HOST=unix:///path/to/docker.sock`
        : code === "ECONNREFUSED"
          ? `nothing listens on ${where}: start the Docker engine (dockerd)`
          : code === "EACCES" || code === "EPERM"
            ? `permission denied on ${where}: run the worker as root or as a member of the docker group`
            : undefined;
    if (fix)
      return new BackendUnavailableError(`docker engine unavailable (${what}): ${fix}`, {
        cause: error,
      });
    return new BackendError(
      `docker engine: ${what}: ${(error as Error)?.message ?? String(error)}`,
      {
        cause: error,
      },
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.destroy().catch(() => {});
  }
}

function isAbort(error: unknown): boolean {
  return (error as { name?: string } | undefined)?.name === "AbortError";
}

function errorCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The engine puts its error text in `{"message": ...}`; older paths answer plain text. */
function engineMessage(data: Buffer): string {
  const text = data.toString("utf8").trim();
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === "string") return parsed.message;
  } catch {}
  return text.slice(0, 500);
}

function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v) params.append(k, item);
    else params.append(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}
