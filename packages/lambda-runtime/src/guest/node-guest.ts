/**
 * The Node.js guest runtime. It runs inside a sandbox as `node /packages/ol-runtime/node-guest.js`,
 * loads the lambda from /handler and serves HTTP/1.1 on /host/ol.sock. It is bundled into one
 * file with no imports but Node's own, because the sandbox sees nothing else.
 *
 * Two lambda styles:
 * - `f(event, context)`: the JSON body in (empty body is `{}`), a JSON-serialisable value out;
 * - `export default { fetch(request) }`: a Web Request in, a Web Response out.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import {
  CONNECTION_HEADERS,
  fieldValueProblem,
  isFieldValue,
  isFinalStatus,
  isHeaderName,
  quoteShort,
} from "../http-fields.js";

type FHandler = (event: unknown, context: LambdaContext) => unknown;
type FetchHandler = (request: Request) => Response | Promise<Response>;

interface LambdaContext {
  readonly lambda: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

type Loaded =
  | { readonly kind: "f"; readonly f: FHandler }
  | { readonly kind: "fetch"; readonly fetch: FetchHandler }
  | { readonly kind: "error"; readonly message: string };

// f.compiled.mjs is what the worker compiled from f.ts at install.
const ENTRY_FILES = ["f.compiled.mjs", "f.mjs", "f.js", "f.cjs"];

/** `cacheKey` makes a second load of the same path a fresh module (in-process tests only). */
export async function loadHandler(dir: string, cacheKey?: string): Promise<Loaded> {
  const entry = ENTRY_FILES.map((name) => join(dir, name)).find((path) => existsSync(path));
  if (!entry) {
    return {
      kind: "error",
      message: `no entry file in the lambda: expected one of ${ENTRY_FILES.join(", ")}`,
    };
  }
  let mod: Record<string, unknown>;
  try {
    const url = pathToFileURL(entry).href + (cacheKey ? `?v=${encodeURIComponent(cacheKey)}` : "");
    mod = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    return {
      kind: "error",
      message: `loading ${entry.slice(dir.length + 1)} failed: ${describe(error)}`,
    };
  }
  const candidates = [mod, mod.default as Record<string, unknown> | undefined];
  for (const m of candidates) {
    if (m && typeof m.f === "function") return { kind: "f", f: m.f as FHandler };
  }
  for (const m of candidates) {
    if (m && typeof m.fetch === "function") {
      const owner = m;
      return { kind: "fetch", fetch: (req) => (owner.fetch as FetchHandler).call(owner, req) };
    }
  }
  return {
    kind: "error",
    message: `${entry.slice(dir.length + 1)} exports neither a function f(event, context) nor a default { fetch(request) }`,
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

export function createGuestHandler(loaded: Loaded, lambdaName: string) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (loaded.kind === "error") {
        sendError(res, 500, "OL_LAMBDA_LOAD_FAILED", loaded.message);
        return;
      }
      if (loaded.kind === "f") await runF(loaded.f, lambdaName, req, res);
      else await runFetch(loaded.fetch, req, res);
    } catch (error) {
      if (!res.headersSent) sendError(res, 500, "OL_LAMBDA_ERROR", describe(error));
      else res.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  };
}

async function runF(f: FHandler, lambda: string, req: IncomingMessage, res: ServerResponse) {
  const raw = (await readBody(req)).toString("utf8");
  let event: unknown = {};
  if (raw.trim() !== "") {
    try {
      event = JSON.parse(raw);
    } catch (error) {
      sendError(
        res,
        400,
        "OL_INVALID_JSON",
        `the request body is not valid JSON: ${(error as Error).message}`,
      );
      return;
    }
  }
  const context: LambdaContext = {
    lambda,
    method: req.method ?? "GET",
    path: req.url ?? "/",
    headers: req.headers,
  };
  let result: unknown;
  try {
    result = await f(event, context);
  } catch (error) {
    sendError(res, 500, "OL_LAMBDA_ERROR", describe(error));
    return;
  }
  const body = JSON.stringify(result === undefined ? null : result);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

async function runFetch(fetchHandler: FetchHandler, req: IncomingMessage, res: ServerResponse) {
  const method = req.method ?? "GET";
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  const abort = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) abort.abort();
  });
  const request = new Request(
    new URL(req.url ?? "/", `http://${headers.get("host") ?? "localhost"}`),
    {
      method,
      headers,
      signal: abort.signal,
      ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream, duplex: "half" } : {}),
    },
  );
  let response: Response;
  try {
    response = await fetchHandler(request);
  } catch (error) {
    sendError(res, 500, "OL_LAMBDA_ERROR", describe(error));
    return;
  }
  if (!(response instanceof Response)) {
    sendError(res, 500, "OL_LAMBDA_ERROR", "fetch() must return a Response");
    return;
  }
  const answer = checkedAnswer(response);
  if (typeof answer === "string") {
    response.body?.cancel().catch(() => {});
    sendError(res, 500, "OL_LAMBDA_BAD_RESPONSE", `fetch() returned a Response with ${answer}`);
    return;
  }
  res.writeHead(answer.status, answer.statusText, answer.headers);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!res.write(value)) await new Promise((resolve) => res.once("drain", resolve));
  }
  res.end();
}

/**
 * The status, status text and headers of a lambda's Response, or what is wrong with them. A
 * Response subclass can return anything from its getters, so nothing is taken on trust: a bad
 * answer becomes the guest's 500 instead of bytes that split the answer or break HTTP.
 */
function checkedAnswer(
  response: Response,
): { status: number; statusText: string; headers: Record<string, string | string[]> } | string {
  const status = response.status;
  if (typeof status !== "number" || !isFinalStatus(status)) {
    return `status ${quoteShort(String(status))}; a final HTTP status is an integer from 200 to 599`;
  }
  const statusText = response.statusText;
  if (typeof statusText !== "string" || !isFieldValue(statusText)) {
    return "a statusText that HTTP cannot carry (a control character such as CR or LF)";
  }
  const headers: Record<string, string | string[]> = Object.create(null);
  let problem: string | undefined;
  const check = (name: unknown, value: unknown): boolean => {
    if (typeof name !== "string" || !isHeaderName(name)) {
      problem = `a header name that is not an HTTP token: ${quoteShort(String(name))}`;
    } else if (typeof value !== "string" || !isFieldValue(value)) {
      const why = typeof value === "string" ? fieldValueProblem(value) : "is not a string";
      problem = `header ${quoteShort(name)} whose value ${why}`;
    }
    return problem === undefined;
  };
  response.headers.forEach((value, name) => {
    if (problem !== undefined || !check(name, value)) return;
    const lower = name.toLowerCase();
    if (lower !== "set-cookie" && !CONNECTION_HEADERS.has(lower)) headers[lower] = value;
  });
  const cookies = response.headers.getSetCookie();
  for (const cookie of cookies) if (problem === undefined) check("set-cookie", cookie);
  if (problem !== undefined) return problem;
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  return { status, statusText, headers };
}

/**
 * Pre-imports packages from /handler/node_modules, so that a lambda given this runtime later
 * finds them in the module cache (the zygote's point). Failures only cost the speed-up.
 */
export async function preImport(handlerDir: string, names: readonly string[]): Promise<void> {
  const require = createRequire(join(handlerDir, "index.js"));
  for (const name of names) {
    try {
      await import(pathToFileURL(require.resolve(name)).href);
    } catch (error) {
      console.error(`ol-node-guest: pre-import of ${name} failed: ${describe(error)}`);
    }
  }
}

/**
 * A zygote: serves before it has a lambda, and takes one with `POST /_ol/load {"env": {...}}`
 * once the worker has put the lambda's code in /handler. Answers 503 to anything else until then.
 */
export function createDeferredHandler(handlerDir: string, cacheKey?: string) {
  let serve: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (serve) return serve(req, res);
    if (req.url === "/_ol/ping") {
      sendJson(res, 200, { ready: true });
      return;
    }
    if (req.method !== "POST" || req.url !== "/_ol/load") {
      sendError(res, 503, "OL_GUEST_NOT_LOADED", "this runtime has no lambda yet");
      return;
    }
    let env: Record<string, string> = {};
    try {
      env =
        (JSON.parse((await readBody(req)).toString("utf8")) as { env?: Record<string, string> })
          .env ?? {};
    } catch {
      sendError(res, 400, "OL_INVALID_JSON", "the load request is not JSON");
      return;
    }
    Object.assign(process.env, env);
    const loaded = await loadHandler(handlerDir, cacheKey);
    serve = createGuestHandler(loaded, env.OL_LAMBDA_NAME ?? "lambda");
    sendJson(
      res,
      200,
      loaded.kind === "error"
        ? { loaded: false, error: loaded.message }
        : { loaded: true, style: loaded.kind },
    );
  };
}

/**
 * Runs the module loader once for each kind of entry file, so a lambda's first load does not
 * pay for the loader's own first use (measured: about 8 ms of a 10 ms load).
 */
async function warmLoader(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ol-warm-"));
  try {
    for (const [name, text] of [
      ["w.cjs", "exports.f = (e) => JSON.stringify(e);"],
      ["w.mjs", "export const f = (e) => JSON.stringify(e);"],
      ["w.js", "exports.f = () => 1;"],
    ] as const) {
      writeFileSync(join(dir, name), text);
      await loadFile(join(dir, name));
    }
  } catch (error) {
    console.error(`ol-node-guest: warming the loader failed: ${describe(error)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loadFile(path: string): Promise<unknown> {
  return import(pathToFileURL(path).href);
}

export async function main(): Promise<void> {
  const socketPath = process.env.OL_GUEST_SOCKET ?? "/host/ol.sock";
  const handlerDir = process.env.OL_HANDLER_DIR ?? "/handler";
  let handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  if (process.env.OL_DEFERRED_LOAD === "1") {
    await preImport(handlerDir, (process.env.OL_PRE_IMPORT ?? "").split(",").filter(Boolean));
    await warmLoader();
    handler = createDeferredHandler(handlerDir);
  } else {
    const loaded = await loadHandler(handlerDir);
    if (loaded.kind === "error") console.error(`ol-node-guest: ${loaded.message}`);
    handler = createGuestHandler(loaded, process.env.OL_LAMBDA_NAME ?? "lambda");
  }
  const server = createServer({ keepAliveTimeout: 120_000 }, handler);
  server.listen(socketPath);
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
