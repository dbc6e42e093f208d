import { once } from "node:events";
import { Agent, request as httpRequest } from "node:http";
import {
  ArchiveTooLargeError,
  BadArchiveError,
  LambdaCrashedError,
  LambdaLoadError,
  LambdaNotFoundError,
  LambdaTimeoutError,
  MemoryPoolExhaustedError,
  MethodNotAllowedError,
  QueueFullError,
  WorkerShuttingDownError,
} from "@openlambda/lambda-runtime";
import type { Logger } from "@openlambda/sandbox-core";
import { afterEach, describe, expect, it } from "vitest";
import { type HttpTrigger, type HttpTriggerOptions, httpTrigger } from "./http-trigger.js";
import {
  gate,
  readAll,
  send,
  TestIntrospection,
  TestInvoker,
  TestRegistry,
  until,
} from "./test-helpers.js";

const TOKEN = "s3cret-token";
const running: HttpTrigger[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((t) => t.stop()));
});

async function start(options: Partial<HttpTriggerOptions> = {}) {
  const invoker = new TestInvoker();
  const registry = new TestRegistry();
  const trigger = httpTrigger({
    host: "127.0.0.1",
    port: 0,
    adminToken: TOKEN,
    registry,
    introspection: new TestIntrospection(),
    ...options,
  });
  await trigger.start(invoker);
  running.push(trigger);
  return { trigger, invoker, registry, port: trigger.address().port };
}

function errorBody(text: string): { code: string; message: string } {
  return (JSON.parse(text) as { error: { code: string; message: string } }).error;
}

describe("/run/NAME", () => {
  it.each([
    ["/run/echo", "/"],
    ["/run/echo/", "/"],
    ["/run/echo?x=1&y=%20z", "/?x=1&y=%20z"],
    ["/run/echo/a/b", "/a/b"],
    ["/run/echo/a/b/?q=1&r=2", "/a/b/?q=1&r=2"],
    ["/run/my-fn_2.v1/x", "/x"],
  ])("passes %s to the invoker with path %s", async (url, path) => {
    const { port, invoker } = await start();
    const reply = await send(port, url);
    expect(reply.status).toBe(200);
    const seen = JSON.parse(reply.text) as { name: string; path: string; method: string };
    expect(seen.path).toBe(path);
    expect(seen.method).toBe("GET");
    expect(invoker.calls[0]!.name).toBe(url.slice(5).split(/[/?]/)[0]);
    expect(invoker.calls[0]!.request.body).toBeNull();
  });

  it("passes method, end-to-end headers and the body", async () => {
    const { port } = await start();
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      const reply = await send(port, "/run/echo/items?id=4", {
        method,
        headers: { "x-test": "yes", "content-type": "application/json", connection: "keep-alive" },
        body: '{"x":1}',
      });
      const seen = JSON.parse(reply.text) as {
        method: string;
        path: string;
        headers: Record<string, string>;
        body: string;
      };
      expect(seen.method).toBe(method);
      expect(seen.path).toBe("/items?id=4");
      expect(seen.body).toBe('{"x":1}');
      expect(seen.headers["x-test"]).toBe("yes");
      expect(seen.headers["content-type"]).toBe("application/json");
      expect(seen.headers["content-length"]).toBe("7");
      expect(seen.headers.connection).toBeUndefined();
    }
  });

  it.each([42, 100, 150, 101, 199, 600, 999, 0, 200.5])(
    "refuses an answer with status %s: 502 OL_GUEST_BAD_RESPONSE, and the connection goes on",
    async (status) => {
      const { port, invoker } = await start();
      invoker.handler = async () => ({ status, headers: { "x-injected": "yes" }, body: "body" });
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const reply = await send(port, "/run/echo", { agent });
        expect(reply.status).toBe(502);
        expect(errorBody(reply.text).code).toBe("OL_GUEST_BAD_RESPONSE");
        expect(reply.headers["x-injected"]).toBeUndefined();
        invoker.handler = async () => ({ status: 200, headers: {}, body: "next" });
        const next = await send(port, "/run/echo", { agent });
        expect([next.status, next.text, next.localPort]).toEqual([200, "next", reply.localPort]);
      } finally {
        agent.destroy();
      }
    },
  );

  it("streams the request body to the invoker as it arrives", async () => {
    const { port, invoker } = await start();
    const firstChunk = gate();
    invoker.handler = async (_name, request) => {
      const chunks: string[] = [];
      for await (const chunk of request.body as AsyncIterable<Uint8Array>) {
        chunks.push(Buffer.from(chunk).toString());
        if (chunks.length === 1) firstChunk.open();
      }
      expect(request.headers["transfer-encoding"]).toBeUndefined();
      return { status: 200, headers: {}, body: chunks.join("|") };
    };
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      path: "/run/up",
      method: "POST",
      agent: false,
    });
    req.flushHeaders();
    req.write("one");
    // The invoker holds the first chunk while the client has not finished sending.
    await firstChunk.promise;
    req.end("two");
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    let text = "";
    for await (const c of res) text += c;
    expect(res.statusCode).toBe(200);
    expect(text.replaceAll("|", "")).toBe("onetwo");
  });

  it("streams the response: chunks arrive before the invoker finishes", async () => {
    const { port, invoker } = await start();
    const second = gate();
    let finished = false;
    invoker.handler = async () => ({
      status: 201,
      headers: { "content-type": "text/plain", "x-lambda": "1", "transfer-encoding": "chunked" },
      body: (async function* () {
        yield new TextEncoder().encode("first;");
        await second.promise;
        yield new TextEncoder().encode("second");
        finished = true;
      })(),
    });
    const req = httpRequest({ host: "127.0.0.1", port, path: "/run/stream", agent: false });
    req.end();
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    expect(res.statusCode).toBe(201);
    expect(res.headers["x-lambda"]).toBe("1");
    const [chunk] = (await once(res, "data")) as [Buffer];
    expect(chunk.toString()).toBe("first;");
    expect(finished).toBe(false);
    second.open();
    let rest = "";
    for await (const c of res) rest += c;
    expect(rest).toBe("second");
    expect(finished).toBe(true);
  });

  it("answers whole string, bytes and empty bodies with their status and headers", async () => {
    const { port, invoker } = await start();
    invoker.handler = async (name) => {
      if (name === "text")
        return { status: 200, headers: { "set-cookie": ["a=1", "b=2"] }, body: "hello" };
      if (name === "bytes") return { status: 202, headers: {}, body: new Uint8Array([104, 105]) };
      return { status: 204, headers: { "x-empty": "yes" }, body: null };
    };
    const text = await send(port, "/run/text");
    expect([text.status, text.text, text.headers["content-length"]]).toEqual([200, "hello", "5"]);
    expect(text.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    const bytes = await send(port, "/run/bytes");
    expect([bytes.status, bytes.text]).toEqual([202, "hi"]);
    const empty = await send(port, "/run/empty");
    expect([empty.status, empty.text, empty.headers["x-empty"]]).toEqual([204, "", "yes"]);
  });

  it.each([
    [new LambdaNotFoundError("no lambda echo"), 404],
    [new QueueFullError("queue full"), 429],
    [new LambdaTimeoutError("timed out after 30 s"), 502],
    [new LambdaCrashedError("guest died"), 502],
    [new LambdaLoadError("no f.js"), 500],
    [new MemoryPoolExhaustedError("pool"), 503],
    [new WorkerShuttingDownError("stopping"), 503],
    [new BadArchiveError("bad"), 400],
  ])("maps %s to its status with a JSON error body", async (err, status) => {
    const { port, invoker } = await start();
    invoker.handler = async () => {
      throw err;
    };
    const reply = await send(port, "/run/echo", { method: "POST", body: "{}" });
    expect(reply.status).toBe(status);
    expect(reply.headers["content-type"]).toMatch(/^application\/json/);
    expect(errorBody(reply.text)).toEqual({ code: err.code, message: err.message });
  });

  it("answers OL_METHOD_NOT_ALLOWED with OpenLambda's exact plain-text body", async () => {
    const { port, invoker } = await start();
    const message = "HTTP method not allowed. Sent: PUT, Allowed: [GET POST]";
    invoker.handler = async () => {
      throw new MethodNotAllowedError(message);
    };
    const reply = await send(port, "/run/echo", { method: "PUT", body: "x" });
    expect(reply.status).toBe(405);
    expect(reply.headers["content-type"]).toMatch(/^text\/plain/);
    expect(reply.text).toBe(message);
  });

  it("maps an unexpected error to 500 OL_INTERNAL and logs it", async () => {
    const logged: unknown[] = [];
    const logger: Logger = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (obj) => logged.push(obj),
      child: () => logger,
    };
    const { port, invoker } = await start({ logger });
    invoker.handler = async () => {
      throw new TypeError("boom at line 3");
    };
    const reply = await send(port, "/run/echo");
    expect(reply.status).toBe(500);
    const body = errorBody(reply.text);
    expect(body.code).toBe("OL_INTERNAL");
    expect(body.message).not.toContain("boom");
    expect(logged).toHaveLength(1);
  });

  it("answers 500 OL_INTERNAL when the lambda layer returns a header node:http refuses", async () => {
    const { port, invoker } = await start();
    invoker.handler = async () => ({
      status: 200,
      headers: { "x-a": "a\r\nX-Injected: yes" },
      body: "x",
    });
    const reply = await send(port, "/run/echo");
    expect(reply.status).toBe(500);
    expect(errorBody(reply.text).code).toBe("OL_INTERNAL");
    expect(reply.headers["x-injected"]).toBeUndefined();
  });

  it.each(["/run/", "/run", "/run/..", "/run/.", "/run/bad%20name", "/run/a$b/x", "/run/?x=1"])(
    "answers %s with 400 OL_INVALID_LAMBDA_NAME",
    async (url) => {
      const { port, invoker } = await start();
      const reply = await send(port, url);
      expect(reply.status).toBe(400);
      expect(errorBody(reply.text).code).toBe("OL_INVALID_LAMBDA_NAME");
      expect(invoker.calls).toHaveLength(0);
    },
  );

  it("answers 413 by Content-Length before reading the body", async () => {
    const { port, invoker } = await start({ bodyLimitBytes: 1024 });
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      path: "/run/echo",
      method: "POST",
      headers: { "content-length": 10 * 1024 * 1024 },
      agent: false,
    });
    req.on("error", () => {});
    req.flushHeaders();
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    let text = "";
    for await (const c of res) text += c;
    expect(res.statusCode).toBe(413);
    expect(res.headers.connection).toBe("close");
    expect(errorBody(text).code).toBe("OL_BODY_TOO_LARGE");
    expect(invoker.calls).toHaveLength(0);
    req.destroy();
  });

  it("accepts a body of exactly the limit", async () => {
    const { port } = await start({ bodyLimitBytes: 1024 });
    const reply = await send(port, "/run/echo", { method: "POST", body: "x".repeat(1024) });
    expect(reply.status).toBe(200);
  });

  it("answers 413 when a chunked body streams past the limit", async () => {
    const { port, invoker } = await start({ bodyLimitBytes: 4096 });
    let invokerSaw: unknown;
    invoker.handler = async (_name, request) => {
      try {
        await readAll(request.body);
      } catch (err) {
        invokerSaw = err;
        throw err;
      }
      return { status: 200, headers: {}, body: "read it all" };
    };
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      path: "/run/echo",
      method: "POST",
      agent: false,
    });
    req.on("error", () => {});
    let answered = false;
    const response = once(req, "response").then(([res]) => {
      answered = true;
      return res as import("node:http").IncomingMessage;
    });
    for (let i = 0; i < 50 && !answered; i++) {
      req.write(Buffer.alloc(1024, 97));
      await new Promise((r) => setTimeout(r, 5));
    }
    const res = await response;
    let text = "";
    for await (const c of res) text += c;
    expect(res.statusCode).toBe(413);
    expect(errorBody(text).code).toBe("OL_BODY_TOO_LARGE");
    expect((invokerSaw as { code?: string }).code).toBe("OL_BODY_TOO_LARGE");
    req.destroy();
  });

  it("answers 413 even when the invoker swallows the too-large error", async () => {
    const { port, invoker } = await start({ bodyLimitBytes: 10 });
    invoker.handler = async (_name, request) => {
      await readAll(request.body).catch(() => {});
      return { status: 200, headers: {}, body: "ok" };
    };
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      path: "/run/echo",
      method: "POST",
      agent: false,
    });
    req.on("error", () => {});
    req.write("0123456789abcdef");
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    res.resume();
    expect(res.statusCode).toBe(413);
    req.destroy();
  });

  it("aborts the invocation's signal when the client goes away", async () => {
    const { port, invoker, trigger } = await start();
    let aborted = false;
    const called = gate();
    invoker.handler = (_name, request) =>
      new Promise((_resolve, reject) => {
        called.open();
        request.signal!.addEventListener("abort", () => {
          aborted = true;
          reject(request.signal!.reason);
        });
      });
    const req = httpRequest({ host: "127.0.0.1", port, path: "/run/slow", agent: false });
    req.on("error", () => {});
    req.end();
    await called.promise;
    req.destroy();
    await until(() => aborted);
    const metrics = await send(port, "/metrics");
    expect(metrics.text).toContain('ol_http_requests_total{route="run",status="499"} 1');
    expect(trigger.address().port).toBe(port);
  });

  it("aborts the signal when the client goes away mid-response and stops reading the lambda", async () => {
    const { port, invoker } = await start();
    let signal: AbortSignal | undefined;
    let returned = false;
    invoker.handler = async (_name, request) => {
      signal = request.signal;
      return {
        status: 200,
        headers: {},
        body: (async function* () {
          try {
            for (let i = 0; i < 10_000; i++) {
              yield new Uint8Array(16 * 1024);
              await new Promise((r) => setTimeout(r, 1));
            }
          } finally {
            returned = true;
          }
        })(),
      };
    };
    const req = httpRequest({ host: "127.0.0.1", port, path: "/run/big", agent: false });
    req.on("error", () => {});
    req.end();
    const [res] = (await once(req, "response")) as [import("node:http").IncomingMessage];
    await once(res, "data");
    res.on("error", () => {});
    req.destroy();
    await until(() => signal?.aborted === true && returned);
  });

  it("serves several requests over one keep-alive connection", async () => {
    const { port } = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const ports = new Set<number | undefined>();
      for (let i = 0; i < 5; i++) {
        const reply = await send(port, `/run/echo/${i}`, { method: "POST", body: `${i}`, agent });
        expect(reply.status).toBe(200);
        expect(reply.headers.connection).toBe("keep-alive");
        ports.add(reply.localPort);
      }
      // Error answers keep the connection too.
      expect((await send(port, "/nope", { agent })).status).toBe(404);
      ports.add((await send(port, "/status", { agent })).localPort);
      expect(ports.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });
});

describe("admin token", () => {
  const routes = [
    ["POST", "/registry/echo"],
    ["DELETE", "/registry/echo"],
    ["GET", "/debug"],
  ] as const;

  it.each(routes)("%s %s without a token answers 401", async (method, path) => {
    const { port, registry } = await start();
    registry.blobs.set("echo", Buffer.from("old"));
    const reply = await send(port, path, { method, body: "new" });
    expect(reply.status).toBe(401);
    expect(reply.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(errorBody(reply.text).code).toBe("OL_UNAUTHORIZED");
    expect(registry.blobs.get("echo")!.toString()).toBe("old");
  });

  it.each(routes)("%s %s with a wrong token answers 401", async (method, path) => {
    const { port, registry } = await start();
    registry.blobs.set("echo", Buffer.from("old"));
    for (const authorization of [
      `Bearer ${TOKEN}x`,
      "Bearer ",
      `Basic ${TOKEN}`,
      TOKEN,
      "Bearer s",
    ]) {
      const reply = await send(port, path, { method, body: "new", headers: { authorization } });
      expect(reply.status).toBe(401);
    }
    expect(registry.blobs.get("echo")!.toString()).toBe("old");
  });

  it("keeps admin routes closed when no token is configured", async () => {
    const { port } = await start({ adminToken: undefined });
    const reply = await send(port, "/debug", { headers: { authorization: "Bearer " } });
    expect(reply.status).toBe(401);
    const undef = await send(port, "/debug", { headers: { authorization: "Bearer undefined" } });
    expect(undef.status).toBe(401);
  });

  it("GET /debug with the token answers introspection.debug() as JSON", async () => {
    const { port } = await start();
    const reply = await send(port, "/debug", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text)).toEqual({ lambdas: [{ name: "echo", instances: 1 }] });
  });
});

describe("/registry", () => {
  const auth = { authorization: `bearer ${TOKEN}` };

  it("uploads a streamed archive, lists it, shows its config and deletes it", async () => {
    const { port, registry } = await start();
    const upload = await send(port, "/registry/echo", {
      method: "POST",
      headers: { ...auth, "content-type": "application/gzip" },
      body: Buffer.from("fake tar.gz bytes"),
    });
    expect(upload.status).toBe(201);
    expect(JSON.parse(upload.text)).toEqual({ name: "echo", version: "v17" });
    expect(registry.blobs.get("echo")!.toString()).toBe("fake tar.gz bytes");

    const list = await send(port, "/registry/");
    expect([list.status, JSON.parse(list.text)]).toEqual([200, ["echo"]]);
    expect(JSON.parse((await send(port, "/registry")).text)).toEqual(["echo"]);

    const config = await send(port, "/registry/echo/config", { headers: auth });
    expect(config.status).toBe(200);
    expect(JSON.parse(config.text)).toMatchObject({ environment: { A: "1" } });

    expect((await send(port, "/registry/echo", { method: "DELETE", headers: auth })).status).toBe(
      204,
    );
    const again = await send(port, "/registry/echo", { method: "DELETE", headers: auth });
    expect(again.status).toBe(404);
    expect(errorBody(again.text).code).toBe("OL_LAMBDA_NOT_FOUND");
    expect((await send(port, "/registry/echo/config", { headers: auth })).status).toBe(404);
  });

  it("passes the registry's refusal on with its status", async () => {
    const { port, registry } = await start();
    registry.uploadError = new ArchiveTooLargeError("extracted size over 100 MiB");
    const reply = await send(port, "/registry/echo", { method: "POST", headers: auth, body: "x" });
    expect(reply.status).toBe(413);
    expect(errorBody(reply.text).code).toBe("OL_ARCHIVE_TOO_LARGE");
  });

  it("refuses an upload past the upload limit with 413", async () => {
    const { port, registry } = await start({ uploadLimitBytes: 8 });
    const reply = await send(port, "/registry/echo", {
      method: "POST",
      headers: auth,
      body: "0123456789",
    });
    expect(reply.status).toBe(413);
    expect(errorBody(reply.text).code).toBe("OL_BODY_TOO_LARGE");
    expect(registry.blobs.size).toBe(0);
  });

  it("refuses invalid names", async () => {
    const { port } = await start();
    for (const [method, path] of [
      ["POST", "/registry/a%2Fb"],
      ["DELETE", "/registry/.."],
      ["GET", "/registry/bad name/config"],
    ] as const) {
      const reply = await send(port, path.replace(" ", "%20"), { method, headers: auth, body: "" });
      expect(reply.status).toBe(400);
      expect(errorBody(reply.text).code).toBe("OL_INVALID_LAMBDA_NAME");
    }
  });

  it("answers 501 OL_ROUTE_UNAVAILABLE without a registry", async () => {
    const { port } = await start({ registry: undefined });
    const reply = await send(port, "/registry/");
    expect(reply.status).toBe(501);
    expect(errorBody(reply.text).code).toBe("OL_ROUTE_UNAVAILABLE");
  });
});

describe("other routes", () => {
  it("GET /status answers ready", async () => {
    const { port } = await start();
    const reply = await send(port, "/status");
    expect([reply.status, reply.text]).toEqual([200, "ready"]);
    expect(reply.headers["content-type"]).toMatch(/^text\/plain/);
    const head = await send(port, "/status", { method: "HEAD" });
    expect([head.status, head.text]).toEqual([200, ""]);
  });

  it("GET /stats answers the worker's timers plus the trigger's", async () => {
    const { port } = await start();
    await send(port, "/run/echo");
    const reply = await send(port, "/stats");
    expect(reply.status).toBe(200);
    const stats = JSON.parse(reply.text) as Record<string, number>;
    expect(stats["invoke.cnt"]).toBe(3);
    expect(stats["invoke.ms-avg"]).toBe(7);
    expect(stats["http-run.cnt"]).toBe(1);
    expect(typeof stats["http-run.ms-avg"]).toBe("number");
  });

  it("GET /metrics answers valid Prometheus text with the worker's and the trigger's metrics", async () => {
    const { port } = await start();
    await send(port, "/run/echo");
    await send(port, "/run/echo");
    await send(port, "/nope");
    const reply = await send(port, "/metrics");
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    const parsed = parsePrometheus(reply.text);
    expect(parsed.types.get("ol_sandboxes")).toBe("gauge");
    expect(parsed.types.get("ol_http_requests_total")).toBe("counter");
    expect(parsed.types.get("ol_http_run_duration_seconds")).toBe("histogram");
    expect(parsed.help.get("ol_sandboxes")).toBe(
      'Live sandboxes by state.\\nWith a "second" line \\\\ and a backslash.',
    );
    const sample = (name: string, labels: Record<string, string> = {}) =>
      parsed.samples.find(
        (s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels),
      )?.value;
    expect(sample("ol_sandboxes", { state: "running" })).toBe(2);
    expect(sample("ol_sandboxes", { state: 'odd "quoted"\\value\nnext' })).toBe(1);
    expect(sample("ol_invocations_total")).toBe(3);
    expect(sample("ol_http_requests_total", { route: "run", status: "200" })).toBe(2);
    expect(sample("ol_http_requests_total", { route: "other", status: "404" })).toBe(1);
    expect(sample("ol_http_run_duration_seconds_count")).toBe(2);
    expect(sample("ol_http_run_duration_seconds_bucket", { le: "+Inf" })).toBe(2);
    const buckets = parsed.samples.filter((s) => s.name === "ol_http_run_duration_seconds_bucket");
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    }
  });

  it("answers unknown routes with 404 OL_ROUTE_NOT_FOUND", async () => {
    const { port } = await start();
    for (const path of ["/", "/nope", "/runner/x", "/registry/echo/other", "/statusx"]) {
      const reply = await send(port, path);
      expect(reply.status).toBe(404);
      expect(errorBody(reply.text).code).toBe("OL_ROUTE_NOT_FOUND");
    }
  });

  it("answers a wrong method on a known route with 405 JSON and Allow", async () => {
    const { port } = await start();
    const cases = [
      ["POST", "/status", "GET, HEAD"],
      ["DELETE", "/metrics", "GET, HEAD"],
      ["PUT", "/stats", "GET, HEAD"],
      ["POST", "/debug", "GET, HEAD"],
      ["POST", "/registry/", "GET, HEAD"],
      ["GET", "/registry/echo", "POST, DELETE"],
      ["POST", "/registry/echo/config", "GET, HEAD"],
    ] as const;
    for (const [method, path, allow] of cases) {
      const reply = await send(port, path, { method });
      expect(reply.status, `${method} ${path}`).toBe(405);
      expect(reply.headers.allow).toBe(allow);
      expect(errorBody(reply.text).code).toBe("OL_ROUTE_METHOD_NOT_ALLOWED");
    }
  });
});

describe("lifecycle", () => {
  it("stop() lets requests in flight finish, then resolves", async () => {
    const { port, invoker, trigger } = await start();
    const release = gate();
    const called = gate();
    invoker.handler = async () => {
      called.open();
      await release.promise;
      return { status: 200, headers: {}, body: "late" };
    };
    const reply = send(port, "/run/slow");
    await called.promise;
    let stopped = false;
    const stopping = trigger.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(stopped).toBe(false);
    await expect(send(port, "/status")).rejects.toThrow();
    release.open();
    const answer = await reply;
    expect([answer.status, answer.text]).toEqual([200, "late"]);
    expect(answer.headers.connection).toBe("close");
    await stopping;
    expect(stopped).toBe(true);
    expect(() => trigger.address()).toThrow(/not listening/);
  });

  it("stop() cuts requests that outlast its bounded wait", async () => {
    const { port, invoker, trigger } = await start({ stopTimeoutMs: 100 });
    const called = gate();
    let aborted = false;
    invoker.handler = (_name, request) =>
      new Promise((_resolve, reject) => {
        called.open();
        request.signal!.addEventListener("abort", () => {
          aborted = true;
          reject(new Error("aborted"));
        });
      });
    const reply = send(port, "/run/forever");
    await called.promise;
    const began = Date.now();
    await trigger.stop();
    expect(Date.now() - began).toBeLessThan(2000);
    await expect(reply).rejects.toThrow();
    await until(() => aborted);
  });

  it("stop() closes idle keep-alive connections at once", async () => {
    const { port, trigger } = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      await send(port, "/status", { agent });
      const began = Date.now();
      await trigger.stop();
      expect(Date.now() - began).toBeLessThan(1000);
    } finally {
      agent.destroy();
    }
  });

  it("refuses a second start and reports a port in use", async () => {
    const { trigger, port } = await start();
    await expect(trigger.start(new TestInvoker())).rejects.toMatchObject({
      code: "OL_TRIGGER_STATE",
    });
    const other = httpTrigger({ host: "127.0.0.1", port });
    await expect(other.start(new TestInvoker())).rejects.toMatchObject({
      code: "OL_LISTEN_FAILED",
    });
    expect(() => other.address()).toThrow();
  });

  it("stop() called twice resolves both, and again when stopped", async () => {
    const { trigger } = await start();
    await Promise.all([trigger.stop(), trigger.stop()]);
    await trigger.stop();
  });

  it("can start again after stop", async () => {
    const { trigger } = await start();
    await trigger.stop();
    await trigger.start(new TestInvoker());
    expect((await send(trigger.address().port, "/status")).text).toBe("ready");
  });

  it("listens on localhost by default", async () => {
    const trigger = httpTrigger({ port: 0 });
    await trigger.start(new TestInvoker());
    running.push(trigger);
    expect(["127.0.0.1", "::1"]).toContain(trigger.address().host);
  });
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict parser of the text exposition format 0.0.4: throws on any malformed line. */
function parsePrometheus(text: string) {
  const help = new Map<string, string>();
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  expect(text.endsWith("\n")).toBe(true);
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      if (kind === "HELP") {
        expect(help.has(name!)).toBe(false);
        help.set(name!, rest!);
      } else {
        expect(["counter", "gauge", "histogram", "summary", "untyped"]).toContain(rest);
        expect(types.has(name!)).toBe(false);
        types.set(name!, rest!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`malformed line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[3] !== undefined) {
      const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)/y;
      let at = 0;
      while (at < m[3].length) {
        labelRe.lastIndex = at;
        const l = labelRe.exec(m[3]);
        if (!l) throw new Error(`malformed labels: ${m[3]}`);
        labels[l[1]!] = l[2]!.replace(/\\(\\|"|n)/g, (_s, c: string) => (c === "n" ? "\n" : c));
        at = labelRe.lastIndex;
      }
    }
    const family = m[1]!.replace(/_(bucket|sum|count)$/, "");
    expect(types.has(m[1]!) || types.get(family) === "histogram").toBe(true);
    const raw = m[4]!;
    samples.push({ name: m[1]!, labels, value: raw === "+Inf" ? Infinity : Number(raw) });
  }
  return { help, types, samples };
}

describe("POST /registry/NAME/prepare", () => {
  const preparer = (fail?: Error) => ({
    calls: [] as string[],
    async prepare(name: string, onProgress?: (line: string) => void) {
      this.calls.push(name);
      onProgress?.("Progress: resolved 1");
      onProgress?.("+ is-number 7.0.0");
      if (fail) throw fail;
      return { ms: 12.4 };
    },
  });
  const lines = (text: string) =>
    text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as unknown);

  it("needs the admin token", async () => {
    const p = preparer();
    const { port } = await start({ preparer: p });
    const reply = await send(port, "/registry/echo/prepare", { method: "POST" });
    expect(reply.status).toBe(401);
    expect(p.calls).toEqual([]);
  });

  it("streams the install's lines as NDJSON, then done", async () => {
    const p = preparer();
    const { port } = await start({ preparer: p });
    const reply = await send(port, "/registry/echo/prepare", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toBe("application/x-ndjson");
    expect(lines(reply.text)).toEqual([
      { line: "Progress: resolved 1" },
      { line: "+ is-number 7.0.0" },
      { done: true, ms: 12 },
    ]);
    expect(p.calls).toEqual(["echo"]);
  });

  it("ends with the OL_* error when the install fails", async () => {
    const p = preparer(new LambdaNotFoundError('no lambda named "gone"'));
    const { port } = await start({ preparer: p });
    const reply = await send(port, "/registry/gone/prepare", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(lines(reply.text).at(-1)).toEqual({
      error: { code: "OL_LAMBDA_NOT_FOUND", message: 'no lambda named "gone"' },
    });
  });

  it("answers 501 without a preparer and 405 for GET", async () => {
    const { port } = await start();
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect(
      (await send(port, "/registry/echo/prepare", { method: "POST", headers: auth })).status,
    ).toBe(501);
    expect((await send(port, "/registry/echo/prepare", { headers: auth })).status).toBe(405);
  });
});
