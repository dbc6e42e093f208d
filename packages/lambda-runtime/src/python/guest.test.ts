/**
 * The Python guest (src/guest/python/ol_guest.py) run by the host's python3 on a temp socket:
 * its HTTP/1.1 (keep-alive, chunked bodies) and the three entry kinds.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { guestClient, waitForGuestSocket } from "@openlambda/sandbox-core";
import type { Pool } from "undici";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { tempDir, writeTree } from "../testing/fixtures.js";

const GUEST = fileURLToPath(new URL("../guest/python/ol_guest.py", import.meta.url));
const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

const started: { child: ChildProcess; client: Pool; cleanup: () => Promise<void> }[] = [];

async function guest(files: Record<string, string>, env: Record<string, string> = {}) {
  const { dir, cleanup } = await tempDir("ol-pyguest-");
  await writeTree(join(dir, "handler"), files);
  const socket = join(dir, "ol.sock");
  const child = spawn(PYTHON, ["-S", "-u", GUEST], {
    env: {
      OL_GUEST_SOCKET: socket,
      OL_HANDLER_DIR: join(dir, "handler"),
      OL_LAMBDA_NAME: "demo",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const ready = await waitForGuestSocket(dirname(socket), { timeoutMs: 5000 });
  if (!ready.socket) throw new Error(`the guest did not start: ${ready.reason}\n${stderr}`);
  const client = guestClient(ready.socket);
  started.push({ child, client, cleanup });
  const call = async (
    path: string,
    init: { method?: string; body?: string | Readable; headers?: Record<string, string> } = {},
  ) => {
    const res = await client.request({
      path,
      method: (init.method ?? (init.body === undefined ? "GET" : "POST")) as "GET",
      ...(init.body === undefined ? {} : { body: init.body }),
      ...(init.headers ? { headers: init.headers } : {}),
    });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };
  return { call, child };
}

afterEach(async () => {
  for (const g of started.splice(0)) {
    await g.client.close().catch(() => {});
    g.child.kill("SIGKILL");
    await g.cleanup();
  }
});
afterAll(async () => {});

describe("the Python guest", () => {
  it("serves f(event) with keep-alive: strings, numbers, {} for an empty body, chunked bodies", async () => {
    const g = await guest({ "f.py": "def f(event):\n    return {'event': event}\n" });
    expect(await g.call("/", { body: '"hi"' })).toMatchObject({
      status: 200,
      text: '{"event": "hi"}',
    });
    expect((await g.call("/", { body: "7" })).text).toBe('{"event": 7}');
    expect((await g.call("/", { method: "POST" })).text).toBe('{"event": {}}');
    expect((await g.call("/", { body: Readable.from(['{"a"', ": 1}"]) })).text).toBe(
      '{"event": {"a": 1}}',
    );
    const res = await g.call("/", { body: "[]" });
    expect(res.headers["content-type"]).toBe("application/json");
    // The same connection served every call: keep-alive.
    expect(g.child.exitCode).toBe(null);
  });

  it("answers invalid JSON with 400 and an exception with 500 and the traceback", async () => {
    const g = await guest({ "f.py": "def f(event):\n    raise KeyError('nope')\n" });
    expect((await g.call("/", { body: "{bad" })).status).toBe(400);
    const res = await g.call("/", { body: "{}" });
    expect(res.status).toBe(500);
    expect(res.text).toMatch(/Traceback[\s\S]*KeyError: 'nope'/);
  });

  it("answers every call with 500 and the import error when the module cannot load", async () => {
    const g = await guest({ "f.py": "import not_a_module_anywhere\n" });
    const res = await g.call("/");
    expect(res.status).toBe(500);
    expect(res.text).toContain("ModuleNotFoundError");
  });

  it("detects a WSGI and an ASGI app, and reads /handler/.env without overriding env", async () => {
    const g = await guest(
      {
        "f.py":
          "import os\ndef app(environ, start_response):\n    start_response('200 OK', [('X-A', os.environ['A']), ('X-B', os.environ['B'])])\n    return [environ['SCRIPT_NAME'].encode(), environ['PATH_INFO'].encode()]\n",
        ".env": "A=from-dotenv\nB='quoted'\n",
      },
      { A: "from-env" },
    );
    const res = await g.call("/x%20y?q");
    expect([res.status, res.text, res.headers["x-a"], res.headers["x-b"]]).toEqual([
      200,
      "/run/demo/x y",
      "from-env",
      "quoted",
    ]);
    const a = await guest({
      "f.py":
        "class App:\n    async def __call__(self, scope, receive, send):\n        await send({'type': 'http.response.start', 'status': 202, 'headers': []})\n        await send({'type': 'http.response.body', 'body': scope['root_path'].encode()})\napp = App()\n",
    });
    expect(await a.call("/", { headers: { "x-ol-lambda": "other" } })).toMatchObject({
      status: 202,
      text: "/run/other",
    });
  });

  it("puts OL_PACKAGES dirs on sys.path, and no site-packages", async () => {
    const { dir, cleanup } = await tempDir("ol-pypkgs-");
    try {
      await writeTree(dir, { "mypkg/__init__.py": "X = 5\n" });
      const g = await guest(
        {
          "f.py":
            "import sys, mypkg\ndef f(e):\n    return [mypkg.X, [p for p in sys.path if 'packages' in p or 'pypkgs' in p]]\n",
        },
        { OL_PACKAGES: dir },
      );
      expect(JSON.parse((await g.call("/")).text)).toEqual([5, [dir]]);
    } finally {
      await cleanup();
    }
  });
});
