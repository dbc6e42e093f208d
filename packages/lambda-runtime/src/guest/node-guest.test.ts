/**
 * The Node guest's side of a bad answer: a fetch handler whose Response says what HTTP cannot
 * carry (Response subclasses can return anything from their getters) gets a 500 from the guest
 * instead of its bytes on the wire. Served on a unix socket in a fresh temp dir.
 */
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { Pool } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../testing/fixtures.js";
import { createGuestHandler } from "./node-guest.js";

const running: { server: Server; client: Pool; cleanup: () => Promise<void> }[] = [];

afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.client.close().catch(() => {});
    r.server.closeAllConnections();
    await new Promise((resolve) => r.server.close(resolve));
    await r.cleanup();
  }
});

async function serve(fetch: (request: Request) => Response | Promise<Response>) {
  const { dir, cleanup } = await tempDir("ol-node-guest-");
  const socket = join(dir, "ol.sock");
  const server = createServer(createGuestHandler({ kind: "fetch", fetch }, "demo"));
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const client = new Pool("http://guest", { socketPath: socket });
  running.push({ server, client, cleanup });
  return async (method = "GET") => {
    const res = await client.request({ path: "/", method: method as "GET" });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };
}

/** A Response whose getters say what the test wants, whatever the constructor checked. */
function lying(overrides: { status?: unknown; statusText?: unknown; headers?: unknown }) {
  class Lying extends Response {
    override get status(): number {
      return ("status" in overrides ? overrides.status : 200) as number;
    }
    override get statusText(): string {
      return ("statusText" in overrides ? overrides.statusText : "OK") as string;
    }
    override get headers(): Headers {
      return ("headers" in overrides ? overrides.headers : new Headers()) as Headers;
    }
  }
  return new Lying("the lambda's body");
}

/** A Headers look-alike that yields the given pairs. */
function fakeHeaders(pairs: [unknown, unknown][], cookies: string[] = []) {
  return {
    forEach(fn: (value: unknown, name: unknown) => void) {
      for (const [name, value] of pairs) fn(value, name);
    },
    getSetCookie: () => cookies,
  };
}

describe("the Node guest refuses a lambda's bad answer", () => {
  it.each([
    [{ status: 999 }, 'status "999"'],
    [{ status: 42 }, 'status "42"'],
    [{ status: 150 }, 'status "150"'],
    [{ status: 200.5 }, 'status "200.5"'],
    [{ status: "200" }, 'status "200"'],
    [{ statusText: "OK\r\nX-Injected: yes" }, "statusText"],
    [{ headers: fakeHeaders([["x-a", "a\r\nX-Injected: yes"]]) }, 'header "x-a" whose value'],
    [{ headers: fakeHeaders([["x-a", "a\nX-Injected: yes"]]) }, "U+000A (LF)"],
    [{ headers: fakeHeaders([["x-a", "a\0b"]]) }, "U+0000 (NUL)"],
    [{ headers: fakeHeaders([["x bad", "1"]]) }, 'header name that is not an HTTP token: "x bad"'],
    [{ headers: fakeHeaders([["x-n", 7]]) }, 'header "x-n" whose value is not a string'],
    [{ headers: fakeHeaders([], ["a=1\r\nX-Injected: yes"]) }, 'header "set-cookie"'],
  ])("%j: 500 OL_LAMBDA_BAD_RESPONSE naming it, nothing of it sent", async (overrides, why) => {
    const call = await serve(() => lying(overrides));
    const res = await call();
    expect(res.status).toBe(500);
    expect(res.headers["x-injected"]).toBeUndefined();
    const error = (JSON.parse(res.text) as { error: { code: string; message: string } }).error;
    expect(error.code, error.message).toBe("OL_LAMBDA_BAD_RESPONSE");
    expect(error.message).toContain(why);
    expect(error.message).not.toContain("Injected");
    expect(res.text).not.toContain("the lambda's body");
    // The guest keeps serving.
    expect((await call()).status).toBe(500);
  });

  it("refuses Response.error() (status 0) with the same code", async () => {
    const call = await serve(() => Response.error());
    const res = await call();
    expect(res.status).toBe(500);
    expect(res.text).toContain("OL_LAMBDA_BAD_RESPONSE");
  });

  it("keeps a huge bad value out of its message", async () => {
    const value = `${"v".repeat(100_000)}\r\nX-Injected: yes`;
    const call = await serve(() => lying({ headers: fakeHeaders([["x-big", value]]) }));
    const res = await call();
    expect(res.status).toBe(500);
    expect(res.text.length).toBeLessThan(400);
  });

  it("sends a good answer: status, reason, headers and cookies, without connection headers", async () => {
    const call = await serve(
      () =>
        new Response("short and stout", {
          status: 418,
          statusText: "I'm a teapot",
          headers: [
            ["x-teapot", "yes\tindeed"],
            ["x-latin", "caf\u00e9"],
            ["set-cookie", "a=1"],
            ["set-cookie", "b=2"],
            ["connection", "close, x-private"],
            ["keep-alive", "timeout=1"],
            ["transfer-encoding", "gzip"],
          ],
        }),
    );
    const res = await call();
    expect([res.status, res.text]).toEqual([418, "short and stout"]);
    expect(res.headers["x-teapot"]).toBe("yes\tindeed");
    expect(res.headers["x-latin"]).toBe("caf\u00e9");
    expect(res.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(res.headers["transfer-encoding"]).toBe("chunked");
    expect(res.headers.connection).toBe("keep-alive");
  });
});
