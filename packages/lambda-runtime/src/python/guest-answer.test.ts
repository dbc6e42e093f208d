/**
 * The Python guest's side of a bad answer: a WSGI or ASGI app whose status or headers HTTP
 * cannot carry gets the guest's 500 `OL_LAMBDA_BAD_RESPONSE` instead of its bytes on the wire
 * (a CR LF in a value would otherwise reach the worker as a header of its own). The guest runs
 * on the host's python3, on a socket in a fresh temp dir.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir, writeTree } from "../testing/fixtures.js";

const GUEST = fileURLToPath(new URL("../guest/python/ol_guest.py", import.meta.url));
const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

// One app per kind, whose answer the request path picks.
const WSGI = `
ANSWERS = {
    "/good": ("418 I'm a teapot", [("X-Teapot", "short and stout"), ("X-Latin", "caf\\xe9")]),
    "/crlf": ("200 OK", [("X-A", "a\\r\\nX-Injected: yes")]),
    "/lf": ("200 OK", [("X-A", "a\\nX-Injected: yes")]),
    "/nul": ("200 OK", [("X-A", "a\\x00b")]),
    "/euro": ("200 OK", [("X-A", "\\u20ac")]),
    "/int-value": ("200 OK", [("X-A", 5)]),
    "/name-space": ("200 OK", [("X Injected", "yes")]),
    "/name-crlf": ("200 OK", [("X-A\\r\\nX-Injected", "yes")]),
    "/status-999": ("999 Nope", []),
    "/status-42": ("42 Short", []),
    "/status-103": ("103 Early Hints", []),
    "/status-crlf": ("200 OK\\r\\nX-Injected: yes", []),
    "/status-words": ("OK", []),
    "/framing": ("200 OK", [("Transfer-Encoding", "chunked"), ("Connection", "close"),
                            ("Content-Length", "9999"), ("X-Kept", "1")]),
}
def app(environ, start_response):
    status, headers = ANSWERS[environ["PATH_INFO"]]
    start_response(status, headers)
    return [b"the app's body"]
`;

const ASGI = `
ANSWERS = {
    "/good": (201, [(b"x-asgi", b"yes")]),
    "/crlf": (200, [(b"x-a", b"a\\r\\nX-Injected: yes")]),
    "/name-space": (200, [(b"x injected", b"yes")]),
    "/status-999": (999, []),
    "/status-101": (101, []),
}
async def app(scope, receive, send):
    status, headers = ANSWERS[scope["path"]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"the app's body"})
`;

interface Guest {
  readonly child: ChildProcess;
  readonly pool: Pool;
  readonly cleanup: () => Promise<void>;
}

async function waitForSocket(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (child.exitCode !== null) throw new Error(`the guest exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(path, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(20);
  }
  throw new Error("the guest did not listen");
}

async function startGuest(source: string): Promise<Guest> {
  const { dir, cleanup } = await tempDir("ol-pyguest-answer-");
  await writeTree(join(dir, "handler"), { "f.py": source });
  const socketPath = join(dir, "ol.sock");
  const child = spawn(PYTHON, ["-S", "-u", GUEST], {
    env: { OL_GUEST_SOCKET: socketPath, OL_HANDLER_DIR: join(dir, "handler") },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitForSocket(socketPath, child);
  // One connection: every answer, good or bad, must leave it usable for the next.
  const pool = new Pool("http://guest", { socketPath, connections: 1 });
  return { child, pool, cleanup };
}

async function call(guest: Guest, path: string, method: "GET" | "HEAD" = "GET") {
  const res = await guest.pool.request({ path, method });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

const guests: Guest[] = [];
let wsgi: Guest;
let asgi: Guest;

beforeAll(async () => {
  wsgi = await startGuest(WSGI);
  guests.push(wsgi);
  asgi = await startGuest(ASGI);
  guests.push(asgi);
});

afterAll(async () => {
  for (const g of guests) {
    await g.pool.destroy().catch(() => {});
    g.child.kill("SIGKILL");
    await g.cleanup();
  }
});

function expectRefused(res: Awaited<ReturnType<typeof call>>, why: string) {
  expect(res.status, res.text).toBe(500);
  expect(res.headers["content-type"]).toBe("text/plain");
  expect(res.headers["x-injected"]).toBeUndefined();
  expect(Object.keys(res.headers)).not.toContain("x-a");
  expect(res.text).toMatch(/^OL_LAMBDA_BAD_RESPONSE: the lambda answered with /);
  expect(res.text).toContain(why);
  expect(res.text).not.toContain("the app's body");
}

describe("the Python guest refuses a WSGI app's bad answer", () => {
  it.each([
    ["/crlf", 'header "X-A" whose value holds the character U+000D (CR) at offset 1'],
    ["/lf", "U+000A (LF)"],
    ["/nul", "U+0000 (NUL)"],
    ["/euro", "U+20AC"],
    ["/int-value", 'header "X-A" whose value is a int, not a str'],
    ["/name-space", 'a header name that is not an HTTP token: "X Injected"'],
    ["/name-crlf", "a header name that is not an HTTP token"],
    ["/status-999", "status 999; a final HTTP status is an integer from 200 to 599"],
    ["/status-42", "a status line that is not 'NNN reason'"],
    ["/status-103", "status 103"],
    ["/status-crlf", "a status line that is not 'NNN reason'"],
    ["/status-words", "a status line that is not 'NNN reason'"],
  ])("%s: 500 naming what is wrong, and the connection goes on", async (path, why) => {
    expectRefused(await call(wsgi, path), why);
    const next = await call(wsgi, "/good");
    expect([next.status, next.headers["x-teapot"]]).toEqual([418, "short and stout"]);
  });

  it("answers HEAD with the refusal's head only, so the next answer is still framed right", async () => {
    const head = await call(wsgi, "/crlf", "HEAD");
    expect(head.status).toBe(500);
    expect(head.text).toBe("");
    expect(head.headers["x-injected"]).toBeUndefined();
    const next = await call(wsgi, "/good");
    expect([next.status, next.text]).toEqual([418, "the app's body"]);
  });

  it("sends a good answer's status, reason and Latin-1 headers", async () => {
    const res = await call(wsgi, "/good");
    expect(res.status).toBe(418);
    expect(res.headers["x-latin"]).toBe("caf\u00e9");
  });

  it("frames the answer itself: the app's framing and connection headers are dropped", async () => {
    const res = await call(wsgi, "/framing");
    expect([res.status, res.text]).toEqual([200, "the app's body"]);
    expect(res.headers["content-length"]).toBe(String("the app's body".length));
    expect(res.headers["transfer-encoding"]).toBeUndefined();
    expect(res.headers.connection).toBeUndefined();
    expect(res.headers["x-kept"]).toBe("1");
  });
});

describe("the Python guest refuses an ASGI app's bad answer", () => {
  it.each([
    ["/crlf", 'header "x-a" whose value holds the character U+000D (CR)'],
    ["/name-space", 'a header name that is not an HTTP token: "x injected"'],
    ["/status-999", "status 999"],
    ["/status-101", "status 101"],
  ])("%s: 500 naming what is wrong", async (path, why) => {
    expectRefused(await call(asgi, path), why);
    const next = await call(asgi, "/good");
    expect([next.status, next.headers["x-asgi"]]).toEqual([201, "yes"]);
  });
});
