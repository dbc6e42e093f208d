/**
 * A guest that lies: a raw socket server in a temp dir that answers with bytes no HTTP server
 * would write. The worker's response path (SandboxedInstance over the real undici transport)
 * must refuse each answer with 502 OL_GUEST_BAD_RESPONSE, pass none of it on, and keep the
 * sandbox serving. Nothing here leaves the test's temp dir.
 */
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { Readable } from "node:stream";
import {
  fakeBackend,
  type Sandbox,
  type SandboxBackend,
  type SandboxSpec,
  silentLogger,
} from "@openlambda/sandbox-core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { InvokeResponse } from "../contracts.js";
import { GuestBadResponseError } from "../errors.js";
import { tempDir, text } from "../testing/fixtures.js";
import { SandboxedInstance } from "./instance.js";
import { MemoryPool } from "./memory-pool.js";
import { Timers } from "./timers.js";

const OK = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\ngood";

/** What the lying guest writes for each request path (the path after /run/NAME). */
const ANSWERS: Record<string, string> = {
  "/good": OK,
  // A CR or LF inside a value is the only way bytes on the wire can carry one.
  "/bare-cr": "HTTP/1.1 200 OK\r\nX-A: a\rX-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/bare-lf": "HTTP/1.1 200 OK\r\nX-A: a\nX-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/obs-fold": "HTTP/1.1 200 OK\r\nX-A: a\r\n X-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/status-999": "HTTP/1.1 999 Whatever\r\nX-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/status-42": "HTTP/1.1 42 Short\r\nX-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/status-abc": "HTTP/1.1 abc Letters\r\nX-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/name-space": "HTTP/1.1 200 OK\r\nX Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/name-colon": "HTTP/1.1 200 OK\r\n: yes\r\nX-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/nul": "HTTP/1.1 200 OK\r\nX-A: a\0X-Injected: yes\r\nContent-Length: 2\r\n\r\nok",
  "/ctl": "HTTP/1.1 200 OK\r\nX-A: a\x1bX-Injected\r\nContent-Length: 2\r\n\r\nok",
  "/cl-and-te":
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nX-Injected: yes\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  "/cl-twice":
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 20\r\nX-Injected: yes\r\n\r\nok",
  "/cl-sign": "HTTP/1.1 200 OK\r\nContent-Length: +2\r\nX-Injected: yes\r\n\r\nok",
  "/huge-header": `HTTP/1.1 200 OK\r\nX-Injected: ${"y".repeat(200_000)}\r\nContent-Length: 2\r\n\r\nok`,
};

/** Starts the lying guest on the sandbox's socket: it answers each request from ANSWERS. */
function lyingGuest(seen: string[]) {
  return async ({ socketPath }: { socketPath: string }) => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
      let buffered = "";
      socket.on("data", (chunk: Buffer) => {
        buffered += chunk.toString("latin1");
        for (
          let end = buffered.indexOf("\r\n\r\n");
          end !== -1;
          end = buffered.indexOf("\r\n\r\n")
        ) {
          const path = buffered.slice(0, end).split(" ")[1] ?? "/";
          buffered = buffered.slice(end + 4);
          seen.push(path);
          socket.write(Buffer.from(ANSWERS[path] ?? OK, "latin1"));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return {
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  };
}

describe("the worker's response path with a lying guest", () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let backend: SandboxBackend;
  let instance: SandboxedInstance;
  let creates: number;
  let seen: string[];

  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir("ol-lying-guest-"));
    seen = [];
    backend = fakeBackend({ guest: lyingGuest(seen), workDir: join(root, "scratch") });
    creates = 0;
    backend.on((e) => {
      if (e.type === "created") creates++;
    });
    instance = new SandboxedInstance({
      lambda: "liar",
      version: "v1",
      backend,
      spec: {
        codeDir: root,
        runtime: "custom",
        command: ["lying-guest"],
        limits: { memoryMb: 64, cpuPercent: 100, procs: 8, timeoutMs: 10_000 },
      },
      pool: new MemoryPool(1024, () => {}),
      timers: new Timers(),
      logger: silentLogger,
      reuseSandbox: true,
      pauseIdleMs: 60_000,
      concurrency: 1,
      onAvailable: () => {},
    });
  });
  afterEach(async () => {
    await instance.drain();
    await backend.cleanup();
    await cleanup();
  });

  const call = (path: string) => instance.invoke({ method: "GET", path, headers: {}, body: null });

  it("passes a good answer on", async () => {
    const res = await call("/good");
    expect([res.status, res.headers["content-type"], await text(res)]).toEqual([
      200,
      "text/plain",
      "good",
    ]);
  });

  it.each(Object.keys(ANSWERS).filter((p) => p !== "/good"))(
    "%s: 502 OL_GUEST_BAD_RESPONSE, nothing of the answer passed on, the sandbox kept",
    async (path) => {
      let response: InvokeResponse | undefined;
      let refused: unknown;
      try {
        response = await call(path);
      } catch (error) {
        refused = error;
      }
      expect(response, `the answer to ${path} was passed on`).toBeUndefined();
      expect(refused).toBeInstanceOf(GuestBadResponseError);
      const error = refused as GuestBadResponseError;
      expect([error.code, error.status]).toEqual(["OL_GUEST_BAD_RESPONSE", 502]);
      expect(error.message).toMatch(/^lambda liar answered with /);
      expect(error.message).not.toMatch(/injected: yes|yyyyyyyy/i);
      expect(error.message.length).toBeLessThan(400);
      expect(seen).toContain(path);
      // The lambda lied, its sandbox did not fail: the next call is served by the same one.
      const next = await call("/good");
      expect([next.status, await text(next)]).toEqual([200, "good"]);
      expect(creates).toBe(1);
      expect(instance.sandbox?.state).toBe("running");
    },
  );
});

/** A sandbox whose transport hands on whatever the guest said, unparsed (a lax third party). */
function laxSandbox(answer: { statusCode: number; headers: object; body: string }) {
  const sandbox = {
    id: "sb-lax",
    state: "running",
    deathReason: undefined,
    dead: new Promise(() => {}),
    pause: async () => {},
    unpause: async () => {},
    destroy: async () => {},
    destroyIfPaused: async () => false,
    dispatcher: {
      async request() {
        return {
          statusCode: answer.statusCode,
          headers: answer.headers,
          body: Object.assign(Readable.from([Buffer.from(answer.body)]), {
            bytes: async () => new Uint8Array(Buffer.from(answer.body)),
          }),
        };
      },
    },
  };
  return sandbox as unknown as Sandbox;
}

describe("the worker's response path with a transport that does not check", () => {
  const spec = {
    codeDir: "/nonexistent",
    runtime: "custom",
    command: ["x"],
    limits: { memoryMb: 64, cpuPercent: 100, procs: 8, timeoutMs: 2000 },
  } as unknown as SandboxSpec;

  function instanceOver(sandbox: Sandbox) {
    return new SandboxedInstance({
      lambda: "liar",
      version: "v1",
      backend: { create: async () => sandbox } as unknown as SandboxBackend,
      spec,
      pool: new MemoryPool(1024, () => {}),
      timers: new Timers(),
      logger: silentLogger,
      reuseSandbox: true,
      pauseIdleMs: 60_000,
      concurrency: 1,
      onAvailable: () => {},
    });
  }

  it.each([
    [{ statusCode: 200, headers: { "x-a": "a\r\nX-Injected: yes" }, body: "ok" }, /U\+000D/],
    [{ statusCode: 999, headers: {}, body: "ok" }, /status "999"/],
    [{ statusCode: 103, headers: {}, body: "ok" }, /status "103"/],
    [{ statusCode: 200, headers: { "x a": "1" }, body: "ok" }, /header name/],
    [
      { statusCode: 200, headers: { "content-length": "0" }, body: "HTTP/1.1 200 OK" },
      /0 with a body of 15/,
    ],
    [
      { statusCode: 200, headers: { "content-length": "100000" }, body: "short" },
      /100000 with a body of 5/,
    ],
  ])("refuses %j", async (answer, why) => {
    const instance = instanceOver(laxSandbox(answer));
    const refused = await instance
      .invoke({ method: "GET", path: "/", headers: {}, body: null })
      .then(async (res) => text(res))
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GuestBadResponseError);
    expect((refused as Error).message).toMatch(why);
    expect((refused as Error).message).not.toContain("Injected");
    expect(instance.busy).toBe(false);
  });

  it("passes a HEAD answer's Content-Length without a body", async () => {
    const lax = laxSandbox({ statusCode: 200, headers: { "content-length": "7" }, body: "" });
    const res = await instanceOver(lax).invoke({
      method: "HEAD",
      path: "/",
      headers: {},
      body: null,
    });
    expect([res.status, res.headers["content-length"], await text(res)]).toEqual([200, "7", ""]);
  });
});
