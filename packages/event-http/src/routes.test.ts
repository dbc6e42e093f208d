/**
 * Who may call which route, walked from the trigger's own table (ROUTES): a route added there
 * without an auth decision does not compile, and one added with it is tested here.
 */
import { readFileSync } from "node:fs";
import type { LambdaConfig } from "@openlambda/lambda-runtime";
import { afterEach, describe, expect, it } from "vitest";
import { type HttpTrigger, httpTrigger } from "./http-trigger.js";
import { matchRoute, ROUTES, type RouteId, type RouteSpec } from "./routes.js";
import { send, TestIntrospection, TestInvoker, TestRegistry } from "./test-helpers.js";

const TOKEN = "s3cret-token";
const SECRET = "sk-live-do-not-leak";
const running: HttpTrigger[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((t) => t.stop()));
});

/** A registry holding `echo`, whose config carries a secret in its environment. */
class SecretRegistry extends TestRegistry {
  override async config(name: string): Promise<LambdaConfig> {
    const base = await super.config(name);
    return { ...base, environment: { API_KEY: SECRET } };
  }
}

/** `adminToken: null` starts the trigger without a token. */
async function start(adminToken: string | null = TOKEN) {
  const invoker = new TestInvoker();
  const registry = new SecretRegistry();
  registry.blobs.set("echo", Buffer.from("old"));
  const prepared: string[] = [];
  const trigger = httpTrigger({
    host: "127.0.0.1",
    port: 0,
    adminToken: adminToken ?? undefined,
    registry,
    introspection: new TestIntrospection(),
    preparer: {
      async prepare(name, onProgress) {
        prepared.push(name);
        onProgress?.("installed");
        return { ms: 1 };
      },
    },
  });
  await trigger.start(invoker);
  running.push(trigger);
  return { invoker, registry, prepared, port: trigger.address().port };
}

/** A request that the route serves with a 2xx when it is allowed. */
function sample(spec: RouteSpec) {
  const method = spec.method === "*" ? "POST" : spec.method;
  const path = spec.path.replace("NAME", "echo").replace("[/path][?query]", "/sub?q=1");
  const body = method === "POST" ? "{}" : undefined;
  return { method, path, ...(body === undefined ? {} : { body }) };
}

const table = Object.entries(ROUTES) as [RouteId, RouteSpec][];
const adminRoutes = table.filter(([, r]) => r.auth === "admin");
const publicRoutes = table.filter(([, r]) => r.auth === "public");

const WRONG_TOKENS = [
  `Bearer ${TOKEN}x`,
  `Bearer ${TOKEN.slice(0, -1)}`,
  "Bearer ",
  "Bearer",
  `Basic ${TOKEN}`,
  TOKEN,
  `Bearer ${TOKEN.toUpperCase()}`,
  `Bearer ${"a".repeat(8000)}`,
];

function errorCode(text: string): string {
  return (JSON.parse(text) as { error: { code: string } }).error.code;
}

describe("ROUTES", () => {
  it("has the admin routes the design names, the config route among them", () => {
    expect(adminRoutes.map(([id]) => id).sort()).toEqual([
      "debug",
      "registryConfig",
      "registryPrepare",
      "registryRemove",
      "registryUpload",
    ]);
    expect(publicRoutes.length).toBeGreaterThan(0);
  });

  it("is the table docs/http-api.md shows: every route, its method and its auth", () => {
    const doc = readFileSync(new URL("../../../docs/http-api.md", import.meta.url), "utf8");
    const head = doc.indexOf("| Route | Method | Auth | Answers |");
    expect(head).toBeGreaterThan(-1);
    const rows = doc
      .slice(head)
      .split("\n\n")[0]!
      .split("\n")
      .slice(2)
      .map((line) => line.split("|").map((cell) => cell.trim()));
    const documented = rows.map(([, route, method, auth]) => {
      const m = method === "any" ? "*" : method!.replaceAll("`", "");
      return `${route!.replaceAll("`", "")} ${m} ${auth}`;
    });
    const actual = table.map(([, r]) => `${r.path} ${r.method} ${r.auth}`);
    expect(documented.sort()).toEqual(actual.sort());
  });
});

describe.each(adminRoutes)("admin route %s", (_id, spec) => {
  const { method, path, body } = sample(spec);
  const methods = method === "GET" ? ["GET", "HEAD"] : [method];

  it(`${spec.method} ${spec.path}: no token or a wrong one is 401 OL_UNAUTHORIZED and changes nothing`, async () => {
    const { port, registry, prepared, invoker } = await start();
    for (const m of methods) {
      for (const authorization of [undefined, ...WRONG_TOKENS]) {
        const headers = authorization === undefined ? {} : { authorization };
        const reply = await send(port, path, {
          method: m,
          headers,
          ...(body === undefined ? {} : { body }),
        });
        expect(reply.status, `${m} ${path} with ${authorization?.slice(0, 20)}`).toBe(401);
        expect(reply.headers["www-authenticate"]).toMatch(/^Bearer/);
        if (m !== "HEAD") expect(errorCode(reply.text)).toBe("OL_UNAUTHORIZED");
        expect(reply.text).not.toContain(SECRET);
      }
    }
    expect(registry.blobs.get("echo")?.toString()).toBe("old");
    expect(registry.blobs.size).toBe(1);
    expect(prepared).toEqual([]);
    expect(invoker.calls).toEqual([]);
  });

  it(`${spec.method} ${spec.path}: the right token is served`, async () => {
    const { port } = await start();
    const reply = await send(port, path, {
      method,
      headers: { authorization: `Bearer ${TOKEN}` },
      ...(body === undefined ? {} : { body }),
    });
    expect(reply.status, reply.text).toBeGreaterThanOrEqual(200);
    expect(reply.status, reply.text).toBeLessThan(300);
  });

  it(`${spec.method} ${spec.path}: closed to every token when the worker has none`, async () => {
    const { port } = await start(null);
    for (const authorization of ["Bearer ", "Bearer undefined", `Bearer ${TOKEN}`]) {
      const reply = await send(port, path, {
        method,
        headers: { authorization },
        ...(body === undefined ? {} : { body }),
      });
      expect(reply.status).toBe(401);
    }
  });
});

describe.each(publicRoutes)("public route %s", (_id, spec) => {
  const { method, path, body } = sample(spec);

  it(`${spec.method} ${spec.path}: served without a token, and with a wrong one`, async () => {
    const { port } = await start();
    for (const headers of [{}, { authorization: "Bearer wrong" }]) {
      const reply = await send(port, path, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
      });
      expect(reply.status, reply.text).toBeGreaterThanOrEqual(200);
      expect(reply.status, reply.text).toBeLessThan(300);
    }
  });
});

describe("the config route under other spellings", () => {
  it("never answers the lambda's environment without the token", async () => {
    const { port } = await start();
    for (const path of [
      "/registry/echo/config?x=1",
      "/registry/echo/config/",
      "/registry/echo/config/.",
      "/registry/echo//config",
      "//registry/echo/config",
      "/registry//echo/config",
      "/registry/./echo/config",
      "/registry/echo/%63onfig",
      "/REGISTRY/echo/config",
      "/registry/echo/CONFIG",
      "/registry/echo/config%00",
      "/run/../registry/echo/config",
      "/status/../registry/echo/config",
    ]) {
      for (const method of ["GET", "HEAD", "POST"]) {
        const reply = await send(port, path, { method });
        expect([401, 400, 404, 405], `${method} ${path}`).toContain(reply.status);
        expect(reply.text).not.toContain(SECRET);
      }
    }
  });
});

describe("matchRoute", () => {
  it("lists the methods a path takes when the method is not one of them", () => {
    expect(matchRoute("PUT", "/registry/x")).toEqual({
      id: undefined,
      allow: "POST, DELETE",
      metric: "registry",
    });
    expect(matchRoute("POST", "/registry/x/config")).toMatchObject({ allow: "GET, HEAD" });
    expect(matchRoute("HEAD", "/registry/x/config")).toMatchObject({ id: "registryConfig" });
    expect(matchRoute("GET", "/registry/x/other")).toBeUndefined();
    expect(matchRoute("GET", "/nope")).toBeUndefined();
  });
});
