// Helpers for this package's tests only (not exported from the entry point).
import { type Agent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import type {
  InvokeRequest,
  InvokeResponse,
  Invoker,
  LambdaConfig,
  Metric,
  RegistryApi,
  WorkerIntrospection,
} from "@openlambda/lambda-runtime";
import { LambdaNotFoundError } from "@openlambda/lambda-runtime";

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  readonly localPort: number | undefined;
}

export interface RequestOptions {
  readonly method?: string;
  readonly headers?: Record<string, string | number>;
  readonly body?: string | Uint8Array;
  readonly agent?: Agent;
}

/** One HTTP request over a real socket; the whole answer as text. */
export function send(port: number, path: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        headers:
          options.body === undefined
            ? (options.headers ?? {})
            : { "content-length": Buffer.byteLength(options.body), ...options.headers },
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            text: Buffer.concat(chunks).toString("utf8"),
            localPort: res.socket?.localPort,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

export async function readAll(body: InvokeRequest["body"]): Promise<string> {
  if (body === null) return "";
  if (typeof body === "string") return body;
  if (body instanceof Uint8Array) return Buffer.from(body).toString("utf8");
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

export type Handler = (name: string, request: InvokeRequest) => Promise<InvokeResponse>;

/** An Invoker whose behaviour each test sets; it records every call. */
export class TestInvoker implements Invoker {
  readonly calls: { name: string; request: InvokeRequest }[] = [];
  handler: Handler = async (name, request) => ({
    status: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name,
      method: request.method,
      path: request.path,
      headers: request.headers,
      body: await readAll(request.body),
    }),
  });

  invoke(name: string, request: InvokeRequest): Promise<InvokeResponse> {
    this.calls.push({ name, request });
    return this.handler(name, request);
  }
}

const defaultConfig: LambdaConfig = {
  triggers: { http: [{ method: "GET" }], cron: [] },
  environment: { A: "1" },
  reuseSandbox: true,
  limits: {},
};

/** A registry in memory: names to the bytes last uploaded. */
export class TestRegistry implements RegistryApi {
  readonly blobs = new Map<string, Buffer>();
  uploadError: unknown;

  async list(): Promise<string[]> {
    return [...this.blobs.keys()].sort();
  }

  async upload(name: string, archive: AsyncIterable<Uint8Array>) {
    const chunks: Uint8Array[] = [];
    for await (const chunk of archive) chunks.push(chunk);
    if (this.uploadError !== undefined) throw this.uploadError;
    this.blobs.set(name, Buffer.concat(chunks));
    return { name, version: `v${this.blobs.get(name)!.length}` };
  }

  async remove(name: string): Promise<boolean> {
    return this.blobs.delete(name);
  }

  async config(name: string): Promise<LambdaConfig> {
    if (!this.blobs.has(name)) throw new LambdaNotFoundError(`no lambda ${name}`);
    return defaultConfig;
  }
}

export class TestIntrospection implements WorkerIntrospection {
  stats(): Record<string, number> {
    return { "invoke.cnt": 3, "invoke.ms-avg": 7 };
  }

  debug(): unknown {
    return { lambdas: [{ name: "echo", instances: 1 }] };
  }

  metrics(): readonly Metric[] {
    return [
      {
        name: "ol_sandboxes",
        help: 'Live sandboxes by state.\nWith a "second" line \\ and a backslash.',
        type: "gauge",
        samples: [
          { labels: { state: "running" }, value: 2 },
          { labels: { state: 'odd "quoted"\\value\nnext' }, value: 1 },
        ],
      },
      {
        name: "ol_invocations_total",
        help: "Invocations.",
        type: "counter",
        samples: [{ value: 3 }],
      },
    ];
  }
}

/** A promise with its resolve function, for tests that hold a step until they say so. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits until `check()` holds, polling at most `tries` times. */
export async function until(check: () => boolean, tries = 200, everyMs = 10): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error("condition not met in time");
}
