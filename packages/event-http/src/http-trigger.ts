import { createHash, timingSafeEqual } from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  ServerResponse,
} from "node:http";
import {
  type Body,
  GuestBadResponseError,
  InvalidLambdaNameError,
  type InvokeResponse,
  type Invoker,
  isFinalStatus,
  LambdaNotFoundError,
  type Metric,
  type Preparer,
  type RegistryApi,
  type WorkerIntrospection,
} from "@openlambda/lambda-runtime";
import { isOlError, type Logger, silentLogger } from "@openlambda/sandbox-core";
import {
  BodyTooLargeError,
  InternalError,
  ListenFailedError,
  RouteMethodNotAllowedError,
  RouteNotFoundError,
  RouteUnavailableError,
  TriggerStateError,
  UnauthorizedError,
} from "./errors.js";
import {
  Histogram,
  PROMETHEUS_CONTENT_TYPE,
  RUN_DURATION_BUCKETS,
  renderPrometheus,
} from "./prometheus.js";
import { matchRoute, ROUTES, type RouteAuth, type RouteId } from "./routes.js";
import type { Trigger } from "./trigger.js";

export interface HttpTriggerOptions {
  /** Interface to listen on. Default `localhost` (the worker config's `worker_url`). */
  readonly host?: string | undefined;
  /** Port to listen on; 0 picks a free one (see `address()`). Default 5000. */
  readonly port?: number | undefined;
  /**
   * Bearer token the admin routes (`ROUTES` in routes.ts: registry writes, a lambda's config,
   * `/debug`) require. Without one (or with an empty one) they are closed: always 401.
   */
  readonly adminToken?: string | undefined;
  /** Largest `/run` request body, in bytes. Default 6 MiB. */
  readonly bodyLimitBytes?: number | undefined;
  /** Largest `POST /registry/NAME` body, in bytes. Default 256 MiB. */
  readonly uploadLimitBytes?: number | undefined;
  /** Serves `/registry/…`; without it those routes answer 501 `OL_ROUTE_UNAVAILABLE`. */
  readonly registry?: RegistryApi | undefined;
  /** Feeds `/stats`, `/metrics` and `/debug`. Without it `/debug` answers 501. */
  readonly introspection?: WorkerIntrospection | undefined;
  /**
   * Serves `POST /registry/NAME/prepare` (admin): installs a lambda's dependencies now and
   * streams the package manager's output. Without it that route answers 501.
   */
  readonly preparer?: Preparer | undefined;
  /** How long an idle keep-alive connection stays open. Default 5000 ms. */
  readonly keepAliveTimeoutMs?: number | undefined;
  /** How long `stop()` waits for requests in flight before cutting connections. Default 10 s. */
  readonly stopTimeoutMs?: number | undefined;
  /** A pino-shaped logger; the trigger never prints. */
  readonly logger?: Logger | undefined;
}

export interface HttpTriggerAddress {
  /** The address actually bound (`127.0.0.1`, `::1`, ...). */
  readonly host: string;
  readonly port: number;
  readonly family: string;
}

/** The HTTP trigger: a `Trigger` that also tells where it listens. */
export interface HttpTrigger extends Trigger {
  /** The address bound by `start()`; throws `OL_TRIGGER_STATE` before `start()` or after `stop()`. */
  address(): HttpTriggerAddress;
}

export const DEFAULT_HTTP_PORT = 5000;
export const DEFAULT_HTTP_HOST = "localhost";
export const DEFAULT_BODY_LIMIT_BYTES = 6 * 1024 * 1024;
export const DEFAULT_UPLOAD_LIMIT_BYTES = 256 * 1024 * 1024;

const LAMBDA_NAME = /^[A-Za-z0-9._-]+$/;

/** Whether `name` is a valid lambda name: `^[A-Za-z0-9._-]+$`, not `.` or `..`. */
export function isValidLambdaName(name: string): boolean {
  return LAMBDA_NAME.test(name) && name !== "." && name !== "..";
}

// Route labels of `ol_http_requests_total` (a route's `metric` in ROUTES, or "other"); a
// response holds the index, so the hot path records a small integer.
const ROUTE_LABELS = ["run", "status", "stats", "metrics", "debug", "registry", "other"] as const;
const R_RUN = 0;
const R_OTHER = 6;

/** Status recorded for a request whose client went away before any answer (nginx's 499). */
const CLIENT_CLOSED = 499;

/** Hop-by-hop request headers: meaningful for this connection only, not for the lambda. */
const HOP_BY_HOP_REQUEST = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "expect",
]);
/** Hop-by-hop response headers the lambda layer may pass on; node:http writes its own. */
const HOP_BY_HOP_RESPONSE = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "trailer",
]);

/** Request bodies larger than this are not drained after an early answer: the connection closes. */
const DRAIN_LIMIT = 64 * 1024;

const JSON_TYPE = "application/json; charset=utf-8";
const TEXT_TYPE = "text/plain; charset=utf-8";

/**
 * A request body as the invoker reads it: streamed from the socket, counted, and cut with
 * `OL_BODY_TOO_LARGE` past the limit. Reading stops without destroying the request, so the
 * trigger can still answer 413.
 */
class LimitedBody implements AsyncIterable<Uint8Array> {
  tooLarge = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly limit: number,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    let seen = 0;
    for await (const chunk of this.req.iterator({
      destroyOnReturn: false,
    }) as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > this.limit) {
        this.tooLarge = true;
        throw tooLargeError(this.limit);
      }
      yield chunk;
    }
  }
}

const emptyBody: AsyncIterable<Uint8Array> = {
  async *[Symbol.asyncIterator]() {},
};

function tooLargeError(limit: number): BodyTooLargeError {
  return new BodyTooLargeError(`The request body is larger than the limit of ${limit} bytes.`);
}

/** The request's headers without hop-by-hop ones; the same object when it has none. */
function endToEndHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  for (const key in headers) {
    if (HOP_BY_HOP_REQUEST.has(key)) {
      const copy: IncomingHttpHeaders = {};
      for (const k in headers) if (!HOP_BY_HOP_REQUEST.has(k)) copy[k] = headers[k];
      return copy;
    }
  }
  return headers;
}

function responseHeaders(
  headers: Readonly<Record<string, string | string[]>>,
): Readonly<Record<string, string | string[]>> {
  for (const key in headers) {
    if (HOP_BY_HOP_RESPONSE.has(key)) {
      const copy: Record<string, string | string[]> = {};
      for (const k in headers) if (!HOP_BY_HOP_RESPONSE.has(k)) copy[k] = headers[k]!;
      return copy;
    }
  }
  return headers;
}

/** Resolves when `res` can take more data, or when it is gone. */
function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** Lets a body the client will never see release what it holds. */
/** Declared bodies up to this size are read whole before the invoke (see handleRun). */
const SMALL_BODY_BYTES = 64 * 1024;
const SMALL_BODY = Symbol("small body");

function readWhole(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.once("end", () =>
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)),
    );
    req.once("error", reject);
    req.once("close", () => {
      if (!req.complete) reject(new Error("request body cut short"));
    });
  });
}

function discard(body: Body): void {
  if (body === null || typeof body === "string" || body instanceof Uint8Array) return;
  const iterator = body[Symbol.asyncIterator]();
  iterator.return?.().catch(() => {});
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Whether the request still has body bytes on the wire that are too many to drain. */
function hasLargeUnreadBody(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers["content-length"];
  if (length !== undefined) return Number(length) > DRAIN_LIMIT;
  return req.headers["transfer-encoding"] !== undefined;
}

/**
 * Creates the HTTP trigger: OpenLambda's routes (`/run/NAME[/path]`, `/status`, `/stats`,
 * `/debug`, `/registry/…`) plus `/metrics`, on `node:http` with keep-alive and streamed bodies.
 */
export function httpTrigger(options: HttpTriggerOptions = {}): HttpTrigger {
  const host = options.host ?? DEFAULT_HTTP_HOST;
  const port = options.port ?? DEFAULT_HTTP_PORT;
  const bodyLimit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const uploadLimit = options.uploadLimitBytes ?? DEFAULT_UPLOAD_LIMIT_BYTES;
  const keepAliveTimeout = options.keepAliveTimeoutMs ?? 5000;
  const stopTimeout = options.stopTimeoutMs ?? 10_000;
  const registry = options.registry;
  const preparer = options.preparer;
  const introspection = options.introspection;
  const log = (options.logger ?? silentLogger).child({ component: "event-http" });
  const tokenDigest =
    options.adminToken === undefined || options.adminToken === ""
      ? undefined
      : sha256(options.adminToken);

  let invoker: Invoker | undefined;
  let server: Server<typeof IncomingMessage, typeof TriggerResponse> | undefined;
  let closing = false;
  let stopping: Promise<void> | undefined;
  let inflight = 0;
  let drained: (() => void) | undefined;

  // The trigger's own figures for /stats and /metrics.
  const requestCounts: Map<number, number>[] = ROUTE_LABELS.map(() => new Map());
  const runDuration = new Histogram(
    "ol_http_run_duration_seconds",
    "Time from receiving a /run request to the end of its response, in seconds.",
    RUN_DURATION_BUCKETS,
  );

  /**
   * One response, with the per-request bookkeeping as fields, so the warm path allocates no
   * closures: `onResponseClose` reads them when the exchange ends, however it ends.
   */
  class TriggerResponse extends ServerResponse<IncomingMessage> {
    route = R_OTHER;
    readonly started = performance.now();
    controller: AbortController | undefined = undefined;

    constructor(...args: ConstructorParameters<typeof ServerResponse<IncomingMessage>>) {
      // node:http passes (req, { highWaterMark, ... }); hand everything on.
      super(...args);
      inflight++;
      this.on("close", onResponseClose);
    }
  }

  function onResponseClose(this: TriggerResponse): void {
    inflight--;
    const finished = this.writableFinished;
    if (!finished) this.controller?.abort();
    const status = this.headersSent ? this.statusCode : CLIENT_CLOSED;
    const counts = requestCounts[this.route]!;
    counts.set(status, (counts.get(status) ?? 0) + 1);
    if (this.route === R_RUN) runDuration.observe((performance.now() - this.started) / 1000);
    if (inflight === 0 && drained !== undefined) drained();
  }

  function onRequest(req: IncomingMessage, res: TriggerResponse): void {
    if (closing) res.setHeader("connection", "close");
    const url = req.url ?? "/";
    if (url.startsWith("/run/")) {
      res.route = R_RUN;
      handleRun(req, res, url).catch(onHandlerFailure);
      return;
    }
    handleOther(req, res, url).catch(onHandlerFailure);
  }

  /** Handlers answer their own errors; this only catches a bug in that answering. */
  function onHandlerFailure(err: unknown): void {
    log.error({ err }, "request handler failed");
  }

  // --- /run/NAME: the hot path -------------------------------------------------------------

  async function handleRun(req: IncomingMessage, res: TriggerResponse, url: string) {
    const length = url.length;
    let end = length;
    for (let i = 5; i < length; i++) {
      const c = url.charCodeAt(i);
      if (c === 0x2f /* / */ || c === 0x3f /* ? */) {
        end = i;
        break;
      }
    }
    const name = url.slice(5, end);
    if (!mayCall("run", req)) {
      sendError(req, res, unauthorized());
      return;
    }
    if (!isValidLambdaName(name)) {
      sendError(req, res, invalidName(name));
      return;
    }
    const path =
      end === length ? "/" : url.charCodeAt(end) === 0x3f ? `/${url.slice(end)}` : url.slice(end);
    const declared = requestBody(req, res, bodyLimit, SMALL_BODY_BYTES);
    if (declared === undefined) return;
    // A small body with a declared length is read whole: it has usually arrived with the
    // headers, and one buffer costs the warm path far less than a stream through two layers.
    let body: LimitedBody | Buffer | null;
    if (declared === SMALL_BODY) {
      try {
        body = await readWhole(req);
      } catch {
        return; // the client went away mid-body
      }
    } else {
      body = declared;
    }
    const controller = new AbortController();
    res.controller = controller;

    let response: InvokeResponse;
    try {
      response = await invoker!.invoke(name, {
        method: req.method!,
        path,
        headers: endToEndHeaders(req.headers),
        body,
        signal: controller.signal,
      });
    } catch (err) {
      if (res.destroyed) return;
      sendError(
        req,
        res,
        body instanceof LimitedBody && body.tooLarge ? tooLargeError(bodyLimit) : err,
      );
      return;
    }
    if (res.destroyed) {
      discard(response.body);
      return;
    }
    if (body instanceof LimitedBody && body.tooLarge) {
      discard(response.body);
      sendError(req, res, tooLargeError(bodyLimit));
      return;
    }
    const status = response.status;
    if (!isFinalStatus(status)) {
      // node:http would write 1xx as an interim answer and the client would take the next
      // answer on its connection for this one. The lambda layer refuses these; so does this.
      discard(response.body);
      sendError(req, res, badStatus(status));
      return;
    }
    const out = response.body;
    // A whole body gets a Content-Length (writeHead below overrides it if the lambda set one).
    if (typeof out === "string") res.setHeader("content-length", Buffer.byteLength(out));
    else if (out instanceof Uint8Array) res.setHeader("content-length", out.byteLength);
    try {
      res.writeHead(status, responseHeaders(response.headers) as OutgoingHttpHeaders);
    } catch (err) {
      // An invalid status or header from the lambda layer.
      discard(response.body);
      sendError(req, res, err);
      return;
    }
    await sendBody(res, response.body);
  }

  /**
   * The request body to hand on: a stream, `SMALL_BODY` when it is declared and at most
   * `wholeUpTo` bytes (read it whole), `null` when there is none, `undefined` when 413 was sent.
   */
  function requestBody(
    req: IncomingMessage,
    res: TriggerResponse,
    limit: number,
    wholeUpTo: number,
  ): LimitedBody | typeof SMALL_BODY | null | undefined {
    const headers = req.headers;
    const length = headers["content-length"];
    if (length !== undefined) {
      const n = Number(length);
      if (n > limit) {
        sendError(req, res, tooLargeError(limit));
        return undefined;
      }
      if (n === 0) return null;
      if (n <= wholeUpTo) return SMALL_BODY;
      return new LimitedBody(req, limit);
    }
    if (headers["transfer-encoding"] !== undefined) return new LimitedBody(req, limit);
    return null;
  }

  async function sendBody(res: TriggerResponse, body: Body): Promise<void> {
    if (body === null) {
      res.end();
      return;
    }
    if (typeof body === "string" || body instanceof Uint8Array) {
      res.end(body);
      return;
    }
    try {
      for await (const chunk of body) {
        if (res.destroyed) break;
        if (!res.write(chunk)) await writable(res);
      }
      if (!res.destroyed) res.end();
    } catch (err) {
      // The head is out: only a cut connection tells the client the body is incomplete.
      if (!res.destroyed) log.warn({ err }, "response body stream failed; connection cut");
      res.destroy();
    }
  }

  // --- errors ------------------------------------------------------------------------------

  function invalidName(name: string): InvalidLambdaNameError {
    return new InvalidLambdaNameError(
      `Invalid lambda name ${JSON.stringify(name)}: names match ^[A-Za-z0-9._-]+$ and are not . or ..`,
    );
  }

  function badStatus(status: number): GuestBadResponseError {
    return new GuestBadResponseError(
      `The lambda answered with status ${String(status).slice(0, 20)}; a final HTTP status is an integer from 200 to 599.`,
    );
  }

  function sendError(req: IncomingMessage, res: TriggerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    let status: number;
    let code: string;
    let message: string;
    if (isOlError(err)) {
      status = err.status >= 400 && err.status <= 599 ? err.status : 500;
      code = err.code;
      message = err.message;
    } else {
      log.error({ err }, "unexpected error while answering a request");
      status = 500;
      code = InternalError.CODE;
      message = "Internal error in the worker; its log has the details.";
    }
    // Drop whatever a failed attempt at the real answer set, but keep a decided Connection.
    for (const header of res.getHeaderNames())
      if (header !== "connection") res.removeHeader(header);
    if (hasLargeUnreadBody(req)) res.setHeader("connection", "close");
    if (code === "OL_METHOD_NOT_ALLOWED") {
      // OpenLambda answers a method refused by ol.yaml with its message as plain text.
      res.writeHead(405, { "content-type": TEXT_TYPE });
      res.end(message);
      return;
    }
    if (status === 401) res.setHeader("www-authenticate", 'Bearer realm="openlambda"');
    if (err instanceof RouteMethodNotAllowedError && err.allow !== "") {
      res.setHeader("allow", err.allow);
    }
    res.writeHead(status, { "content-type": JSON_TYPE });
    res.end(JSON.stringify({ error: { code, message } }));
  }

  function methodNotAllowed(req: IncomingMessage, path: string, allow: string) {
    const err = new RouteMethodNotAllowedError(
      `${req.method} is not allowed on ${path}; allowed: ${allow}.`,
    );
    err.allow = allow;
    return err;
  }

  function sendJson(res: TriggerResponse, status: number, value: unknown): void {
    const text = JSON.stringify(value);
    res.writeHead(status, { "content-type": JSON_TYPE });
    res.end(text);
  }

  // --- the other routes --------------------------------------------------------------------

  function authorized(req: IncomingMessage): boolean {
    if (tokenDigest === undefined) return false;
    const header = req.headers.authorization;
    if (header === undefined || header.length < 7) return false;
    if (header.slice(0, 7).toLowerCase() !== "bearer ") return false;
    return timingSafeEqual(sha256(header.slice(7).trim()), tokenDigest);
  }

  /** Whether the request may call the route: ROUTES decides which need the token. */
  function mayCall(id: RouteId, req: IncomingMessage): boolean {
    const auth: RouteAuth = ROUTES[id].auth;
    return auth === "public" || authorized(req);
  }

  function unauthorized(): UnauthorizedError {
    return new UnauthorizedError(
      "This route needs the worker's admin token: Authorization: Bearer <token>.",
    );
  }

  /**
   * NDJSON as the install goes: `{"line": "..."}` per line of output, then `{"done": true,
   * "ms": N}` or `{"error": {"code", "message"}}` (the status is already 200 by then).
   */
  async function prepareStreaming(res: TriggerResponse, p: Preparer, name: string): Promise<void> {
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    const send = (value: unknown) => res.write(`${JSON.stringify(value)}\n`);
    try {
      const { ms } = await p.prepare(name, (line) => send({ line }));
      send({ done: true, ms: Math.round(ms) });
    } catch (err) {
      const code = isOlError(err) ? err.code : "OL_INTERNAL";
      const message = isOlError(err)
        ? err.message
        : "Internal error in the worker; its log has the details.";
      if (!isOlError(err)) log.error({ err }, "preparing a lambda failed");
      send({ error: { code, message } });
    }
    res.end();
  }

  function requireRegistry(): RegistryApi {
    if (registry === undefined) {
      throw new RouteUnavailableError("This worker's HTTP trigger has no registry.");
    }
    return registry;
  }

  async function handleOther(req: IncomingMessage, res: TriggerResponse, url: string) {
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? "GET";
    try {
      const match = matchRoute(method, path);
      if (match === undefined) throw new RouteNotFoundError(`No route for ${method} ${path}.`);
      res.route = ROUTE_LABELS.indexOf(match.metric);
      if (match.id === undefined) throw methodNotAllowed(req, path, match.allow);
      if (!mayCall(match.id, req)) throw unauthorized();
      await serveRoute(match.id, match.name, req, res);
    } catch (err) {
      if (!res.destroyed) sendError(req, res, err);
    }
  }

  /** Answers a route whose method and token are checked. */
  async function serveRoute(id: RouteId, name: string, req: IncomingMessage, res: TriggerResponse) {
    switch (id) {
      case "status":
        res.writeHead(200, { "content-type": TEXT_TYPE });
        res.end("ready");
        return;
      case "stats":
        sendJson(res, 200, stats());
        return;
      case "metrics":
        res.writeHead(200, { "content-type": PROMETHEUS_CONTENT_TYPE });
        res.end(metricsText());
        return;
      case "debug":
        if (introspection === undefined) {
          throw new RouteUnavailableError("This worker's HTTP trigger has no introspection.");
        }
        sendJson(res, 200, introspection.debug() ?? null);
        return;
      case "run":
        // Only `/run` without a name gets here: `/run/…` is served by handleRun.
        throw invalidName(name);
      case "registryList":
        sendJson(res, 200, await requireRegistry().list());
        return;
      case "registryConfig":
        if (!isValidLambdaName(name)) throw invalidName(name);
        sendJson(res, 200, await requireRegistry().config(name));
        return;
      case "registryPrepare":
        if (!isValidLambdaName(name)) throw invalidName(name);
        if (preparer === undefined) {
          throw new RouteUnavailableError("This worker's HTTP trigger cannot prepare lambdas.");
        }
        await prepareStreaming(res, preparer, name);
        return;
      case "registryUpload": {
        if (!isValidLambdaName(name)) throw invalidName(name);
        const store = requireRegistry();
        const body = requestBody(req, res, uploadLimit, 0);
        if (body === undefined || body === SMALL_BODY) return;
        let stored: { readonly name: string; readonly version: string };
        try {
          stored = await store.upload(name, body ?? emptyBody);
        } catch (err) {
          throw body?.tooLarge ? tooLargeError(uploadLimit) : err;
        }
        if (body?.tooLarge) throw tooLargeError(uploadLimit);
        sendJson(res, 201, { name: stored.name, version: stored.version });
        return;
      }
      case "registryRemove":
        if (!isValidLambdaName(name)) throw invalidName(name);
        if (!(await requireRegistry().remove(name))) {
          throw new LambdaNotFoundError(`No lambda named ${JSON.stringify(name)} in the registry.`);
        }
        res.writeHead(204);
        res.end();
        return;
      default: {
        const unserved: never = id;
        throw new Error(`route ${String(unserved)} has no handler`);
      }
    }
  }

  // --- /stats and /metrics -----------------------------------------------------------------

  function stats(): Record<string, number> {
    const out: Record<string, number> = { ...introspection?.stats() };
    const count = runDuration.count;
    out["http-run.cnt"] = count;
    out["http-run.ms-avg"] = count === 0 ? 0 : Math.round((runDuration.sum * 1000) / count);
    return out;
  }

  function metricsText(): string {
    const samples: { labels: Record<string, string>; value: number }[] = [];
    for (let route = 0; route < ROUTE_LABELS.length; route++) {
      for (const [status, value] of requestCounts[route]!) {
        samples.push({ labels: { route: ROUTE_LABELS[route]!, status: String(status) }, value });
      }
    }
    const own: Metric[] = [
      {
        name: "ol_http_requests_total",
        help: "HTTP requests answered by the trigger, by route and status (499: the client went away first).",
        type: "counter",
        samples,
      },
      {
        name: "ol_http_requests_in_flight",
        help: "HTTP requests the trigger is answering now.",
        type: "gauge",
        samples: [{ value: inflight }],
      },
    ];
    const theirs = introspection?.metrics() ?? [];
    return renderPrometheus([...theirs, ...own]) + runDuration.render();
  }

  // --- lifecycle ---------------------------------------------------------------------------

  return {
    name: "http",

    async start(target: Invoker): Promise<void> {
      if (server !== undefined) throw new TriggerStateError("The HTTP trigger is already started.");
      const created = createServer<typeof IncomingMessage, typeof TriggerResponse>(
        { ServerResponse: TriggerResponse, noDelay: true, keepAliveTimeout },
        onRequest,
      );
      server = created;
      invoker = target;
      closing = false;
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) => {
          server = undefined;
          invoker = undefined;
          reject(
            new ListenFailedError(`Cannot listen on ${host}:${port}: ${err.code ?? err.message}.`, {
              cause: err,
            }),
          );
        };
        created.once("error", onError);
        created.listen(port, host, () => {
          created.off("error", onError);
          resolve();
        });
      });
      created.on("error", (err) => log.error({ err }, "HTTP server error"));
      const bound = this.address();
      log.info({ host: bound.host, port: bound.port }, "HTTP trigger listening");
    },

    stop(): Promise<void> {
      const current = server;
      if (current === undefined) return Promise.resolve();
      stopping ??= stopServer(current).finally(() => {
        stopping = undefined;
      });
      return stopping;
    },

    address(): HttpTriggerAddress {
      const bound = server?.address();
      if (bound === undefined || bound === null || typeof bound === "string") {
        throw new TriggerStateError("The HTTP trigger is not listening; call start() first.");
      }
      return { host: bound.address, port: bound.port, family: bound.family };
    },
  };

  async function stopServer(current: NonNullable<typeof server>): Promise<void> {
    closing = true;
    const closed = new Promise<void>((resolve) => current.close(() => resolve()));
    current.closeIdleConnections();
    if (inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, stopTimeout);
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      drained = undefined;
    }
    current.closeAllConnections();
    await closed;
    server = undefined;
    invoker = undefined;
    log.info({}, "HTTP trigger stopped");
  }
}
