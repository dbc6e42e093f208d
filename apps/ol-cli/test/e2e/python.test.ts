/**
 * Python lambdas in OpenLambda's format through a real worker on SOCK (issue 6's "Done when"):
 * `def f`, WSGI, ASGI, the entry variables, ol.yaml env, pip packages from a local wheel, fork
 * zygotes, and the limits. Probes stay harmless if isolation failed: they only touch their own
 * children and write nowhere.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { backends, lambdaArchive, suiteTitle, Worker } from "./harness.js";
import { expectSealedTree } from "./sealed-tree.js";

/** Builds a pure-Python wheel by hand (no setuptools, no index): `name-version-py3-none-any.whl`. */
export function buildWheel(
  dir: string,
  name: string,
  version: string,
  module: string,
  source: string,
) {
  const script = `
import base64, hashlib, sys, zipfile
dir, name, version, module, source = sys.argv[1:6]
dist = name.replace("-", "_")
def rec(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
files = {
    module + "/__init__.py": source.encode(),
    f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n".encode(),
    f"{dist}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: ol-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
rows = [f"{p},{rec(d)},{len(d)}" for p, d in files.items()] + [f"{dist}-{version}.dist-info/RECORD,,"]
files[f"{dist}-{version}.dist-info/RECORD"] = ("\\n".join(rows) + "\\n").encode()
with zipfile.ZipFile(f"{dir}/{dist}-{version}-py3-none-any.whl", "w") as z:
    for p, d in files.items():
        z.writestr(p, d)
`;
  const run = spawnSync("/usr/bin/python3", ["-c", script, dir, name, version, module, source], {
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`building the wheel failed: ${run.stderr}`);
}

const ECHO = `
import os
def f(event):
    return {"event": event, "greeting": os.environ.get("GREETING")}
`;

const BOOM = `
def f(event):
    raise ValueError("kaboom from python")
`;

const WSGI = `
import json
def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("418 I'm a teapot", [("Content-Type", "application/json"), ("X-Teapot", "short and stout")])
    return [json.dumps({
        "script": environ["SCRIPT_NAME"], "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"], "method": environ["REQUEST_METHOD"],
        "body": body.decode(),
    }).encode()]
`;

const ASGI = `
import json
async def app(scope, receive, send):
    msg = await receive()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"x-asgi", b"yes")]})
    await send({"type": "http.response.body", "body": json.dumps({
        "root": scope["root_path"], "path": scope["path"], "method": scope["method"],
        "query": scope["query_string"].decode(), "body": msg["body"].decode(),
    }).encode()})
`;

// A header value that would split the answer: the client must never see X-Injected.
const INJECT = `
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-A", "a\\r\\nX-Injected: yes")])
    return [b"not for the client"]
`;

// OL_ENTRY_FILE picks the module; OL_WSGI_ENTRY / OL_ASGI_ENTRY name the app in it.
const ENTRY_WSGI = `
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi entry " + environ["PATH_INFO"].encode()]
f = None
`;
const ENTRY_ASGI = `
async def api(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi entry " + scope["path"].encode()})
`;

const USES_PACKAGE = `
import sys
import ol_fixture_pkg
def f(event):
    return {"value": ol_fixture_pkg.VALUE, "file": ol_fixture_pkg.__file__,
            "dist_packages": [p for p in sys.path if "-packages" in p]}
`;

// Says whether the zygote had already imported its package (the fork kept it) before importing it.
const USES_ZYGOTE_PACKAGE = `
import sys
PRELOADED = "ol_fixture_pkg" in sys.modules
import ol_fixture_pkg
def f(event):
    return {"value": ol_fixture_pkg.VALUE, "preloaded": PRELOADED}
`;

// Forks children that sleep briefly, counts how many the kernel refused, kills only its own.
const FORK_BOMB = `
import os, time
def f(event):
    started, failed, kids = 0, 0, []
    for _ in range(40):
        try:
            pid = os.fork()
        except OSError:
            failed += 1
            continue
        if pid == 0:
            time.sleep(2)
            os._exit(0)
        started += 1
        kids.append(pid)
    for pid in kids:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except OSError:
            pass
    return {"started": started, "failed": failed}
`;

const HOG = `
held = []
def f(event):
    for _ in range(int(event.get("mb", 300))):
        held.append(bytearray(1024 * 1024))
    return {"held": len(held)}
`;

const SLEEPY = `
import time
def f(event):
    time.sleep(float(event.get("s", 0)))
    return "awake"
`;

const sock = (await backends()).find((b) => b.name === "sock");
const runs = sock !== undefined && sock.missing === "";
const title = sock
  ? suiteTitle("Python lambdas [sock]", sock)
  : "Python lambdas [sock: not selected]";

(runs ? describe : describe.skip)(title, () => {
  let w: Worker;
  let wheels: string;
  beforeAll(async () => {
    wheels = await mkdtemp(join(tmpdir(), "ol-e2e-wheels-"));
    buildWheel(wheels, "OL.Fixture_Pkg", "1.2.3", "ol_fixture_pkg", 'VALUE = "fixture 1.2.3"\n');
    // One Python node (fork zygote) with the fixture package; the root's serves the rest.
    const tree = join(wheels, "tree.json");
    await writeFile(
      tree,
      JSON.stringify({ packages: [], children: [{ packages: ["OL.Fixture_Pkg==1.2.3"] }] }),
    );
    w = await Worker.start({
      backend: sock as NonNullable<typeof sock>,
      options: [
        "pause_idle_ms=100",
        "pip_index=none",
        `pip_find_links=${wheels}`,
        `import_cache_tree=${tree}`,
      ],
      lambdas: {
        echo: { "f.py": ECHO, "ol.yaml": "environment:\n  GREETING: hello from ol.yaml\n" },
        boom: { "f.py": BOOM },
        wsgi: { "f.py": WSGI },
        asgi: { "f.py": ASGI },
        inject: { "f.py": INJECT },
        "entry-wsgi": {
          "web.py": ENTRY_WSGI,
          "ol.yaml": "environment:\n  OL_ENTRY_FILE: web.py\n  OL_WSGI_ENTRY: application\n",
        },
        "entry-asgi": {
          "service.py": ENTRY_ASGI,
          "ol.yaml": "environment:\n  OL_ENTRY_FILE: service.py\n  OL_ASGI_ENTRY: api\n",
        },
        pkg: { "f.py": USES_PACKAGE, "requirements.txt": "# pinned\nol-fixture-pkg==1.2.3\n" },
        "pkg-zygote": {
          "f.py": USES_ZYGOTE_PACKAGE,
          "requirements.txt": "ol_fixture.pkg==1.2.3\n",
        },
        "plain-zygote": { "f.py": "import os\ndef f(event):\n    return {'uid': os.getuid()}\n" },
        "pkg-missing": { "f.py": USES_PACKAGE, "requirements.txt": "not-on-any-index==9.9.9\n" },
        "pkg-unpinned": { "f.py": USES_PACKAGE, "requirements.txt": "ol-fixture-pkg>=1\n" },
        forkbomb: { "f.py": FORK_BOMB },
        hog: { "f.py": HOG },
        sleepy: { "f.py": SLEEPY, "ol.yaml": "limits:\n  timeout: 1\n" },
      },
    });
  });
  afterAll(async () => {
    await w?.stop();
    if (wheels) await rm(wheels, { recursive: true, force: true });
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
  });

  it("def f echoes a string, a number and an empty body ({}) as JSON", async () => {
    const s = await w.run("echo", { body: '"hi"' });
    expect(s.status).toBe(200);
    expect(s.headers.get("content-type")).toMatch(/^application\/json/);
    expect(s.json).toEqual({ event: "hi", greeting: "hello from ol.yaml" });
    expect((await w.run("echo", { body: "42" })).json).toMatchObject({ event: 42 });
    expect((await w.run("echo", { method: "POST" })).json).toMatchObject({ event: {} });
    expect((await w.run("echo")).json).toMatchObject({ event: {} });
  });

  it("an exception in f answers 500 with the traceback", async () => {
    const res = await w.run("boom", { body: "{}" });
    expect(res.status).toBe(500);
    expect(res.text).toContain("Traceback (most recent call last)");
    expect(res.text).toContain('File "/handler/f.py"');
    expect(res.text).toContain("ValueError: kaboom from python");
  });

  it("a WSGI app answers 418 with its header; SCRIPT_NAME is /run/NAME, PATH_INFO the rest", async () => {
    const res = await w.run("wsgi/a/b?x=1", { body: "payload" });
    expect(res.status).toBe(418);
    expect(res.headers.get("x-teapot")).toBe("short and stout");
    expect(res.json).toEqual({
      script: "/run/wsgi",
      path: "/a/b",
      query: "x=1",
      method: "POST",
      body: "payload",
    });
  });

  it("a WSGI header value with CR LF never reaches the client as a header of its own", async () => {
    const res = await w.run("inject");
    expect(res.status).toBe(500);
    expect(res.headers.get("x-injected")).toBeNull();
    expect(res.headers.get("x-a")).toBeNull();
    expect(res.text).toContain("OL_LAMBDA_BAD_RESPONSE");
    expect(res.text).toContain('header "X-A"');
    expect(res.text).not.toContain("not for the client");
  });

  it("a lambda's environment (GET /registry/NAME/config) is served to the admin token only", async () => {
    const open = await w.fetch("/registry/echo/config");
    expect(open.status).toBe(401);
    expect(open.text).toContain("OL_UNAUTHORIZED");
    expect(open.text).not.toContain("hello from ol.yaml");
    const admin = await w.admin("/registry/echo/config");
    expect(admin.status).toBe(200);
    expect(admin.json).toMatchObject({ environment: { GREETING: "hello from ol.yaml" } });
  });

  it("an ASGI app gets an http scope with root_path", async () => {
    const res = await w.run("asgi/p/q?y=2", { body: "data" });
    expect(res.status).toBe(201);
    expect(res.headers.get("x-asgi")).toBe("yes");
    expect(res.json).toEqual({
      root: "/run/asgi",
      path: "/p/q",
      method: "POST",
      query: "y=2",
      body: "data",
    });
  });

  it("OL_ENTRY_FILE with OL_WSGI_ENTRY or OL_ASGI_ENTRY picks module and app", async () => {
    const a = await w.run("entry-wsgi/here");
    expect([a.status, a.text]).toEqual([200, "wsgi entry /here"]);
    const b = await w.run("entry-asgi/there");
    expect([b.status, b.text]).toEqual([200, "asgi entry /there"]);
  });

  it("takes an uploaded archive whose entry is OL_ENTRY_FILE, and refuses an unpinned one", async () => {
    const archive = lambdaArchive({
      "web.py": ENTRY_WSGI,
      "ol.yaml": "environment:\n  OL_ENTRY_FILE: web.py\n  OL_WSGI_ENTRY: application\n",
    });
    expect((await w.upload("uploaded-py", archive)).status).toBe(201);
    const res = await w.run("uploaded-py/up");
    expect([res.status, res.text]).toEqual([200, "wsgi entry /up"]);
    const bad = lambdaArchive({ "f.py": ECHO, "requirements.txt": "flask\n" });
    const refused = await w.upload("unpinned-py", bad);
    expect(refused.status).toBe(400);
    expect(refused.text).toContain("OL_INVALID_REQUIREMENTS");
  });

  it("installs a pinned requirement from a local wheel; only it is on sys.path", async () => {
    const res = await w.run("pkg", { body: "{}" });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({
      value: "fixture 1.2.3",
      file: "/packages/ol-fixture-pkg-1.2.3/ol_fixture_pkg/__init__.py",
      dist_packages: [],
    });
    // pip wrote it as the installer's uid; the worker made it root's and read-only.
    expect(await expectSealedTree(join(w.dir, "pip", "ol-fixture-pkg-1.2.3"))).toBeGreaterThan(3);
  });

  it("forks a lambda from the zygote tree node of its package, visible in /stats and /debug", async () => {
    type Node = {
      node: string;
      packages: string[];
      zygote: { state: string } | null;
      hits: number;
    };
    const nodes = (v: unknown) => (v as { pythonZygotes?: Node[] | null }).pythonZygotes ?? [];
    await w.waitFor(
      "every Python zygote running",
      (v) => nodes(v).length === 2 && nodes(v).every((n) => n.zygote?.state === "running"),
      60_000,
    );
    const res = await w.run("pkg-zygote", { body: "{}" });
    expect(res.status, res.text).toBe(200);
    // The package was imported before the lambda's own import: the zygote's, kept by the fork.
    expect(res.json).toEqual({ value: "fixture 1.2.3", preloaded: true });
    const plain = await w.run("plain-zygote", { body: "{}" });
    // Unprivileged, with a uid of its own from sandbox_uids (default from 1000000).
    expect(plain.status).toBe(200);
    expect((plain.json as { uid: number }).uid).toBeGreaterThanOrEqual(1_000_000);
    const stats = (await w.fetch("/stats")).json as Record<string, number>;
    expect(stats["zygote.python.hits.0"]).toBeGreaterThanOrEqual(1);
    expect(stats["zygote.python.hits.root"]).toBeGreaterThanOrEqual(1);
    const node = nodes(await w.debug()).find((n) => n.node === "0");
    expect(node).toMatchObject({ packages: ["ol-fixture-pkg==1.2.3"] });
    expect(node?.hits).toBeGreaterThanOrEqual(1);
  });

  it("a package pip cannot find answers 500 naming it with pip's message; unpinned is 400", async () => {
    const res = await w.run("pkg-missing", { body: "{}" });
    expect(res.status).toBe(500);
    expect(res.text).toContain("OL_DEPENDENCY_INSTALL_FAILED");
    expect(res.text).toContain("not-on-any-index==9.9.9");
    expect(res.text).toMatch(/No matching distribution/);
    const unpinned = await w.run("pkg-unpinned", { body: "{}" });
    expect(unpinned.status).toBe(400);
    expect(unpinned.text).toContain("OL_INVALID_REQUIREMENTS");
  });

  it("a fork bomb stops at the procs limit and the sandbox keeps serving", async () => {
    const res = await w.run("forkbomb", { body: "{}" });
    expect(res.status, res.text).toBe(200);
    const { started, failed } = res.json as { started: number; failed: number };
    expect(failed).toBeGreaterThan(0);
    expect(started).toBeLessThan(10);
  });

  it("a memory hog is stopped at its limit (502), and the next call gets a fresh sandbox", async () => {
    const res = await w.run("hog", { body: { mb: 300 } });
    expect(res.status).toBe(502);
    const next = await w.run("hog", { body: { mb: 1 } });
    expect([next.status, next.json]).toEqual([200, { held: 1 }]);
  });

  it("a call past the timeout answers 502, then the lambda recovers", async () => {
    const slow = await w.run("sleepy", { body: { s: 5 } });
    expect(slow.status).toBe(502);
    expect(slow.text).toContain("OL_LAMBDA_TIMEOUT");
    const fast = await w.run("sleepy", { body: { s: 0 } });
    expect([fast.status, fast.json]).toEqual([200, "awake"]);
  });
});
