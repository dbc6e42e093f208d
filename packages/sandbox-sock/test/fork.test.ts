import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type Sandbox,
  type SandboxBackend,
  SandboxCreateError,
  type SandboxSpec,
} from "@openlambda/sandbox-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sockBackend } from "../src/sock-backend.js";
import type { SockSandbox } from "../src/sock-sandbox.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

/**
 * A Python probe guest for forked children. Every probe is harmless even where isolation
 * failed: the mount target is a fresh empty dir it made under /tmp, it kills nothing, and it
 * writes only under /tmp.
 */
const PY_PROBE = `
import ctypes, json, os, socketserver, sys, tempfile
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

libc = ctypes.CDLL(None, use_errno=True)
held = []

def call(fn, *args):
    r = fn(*args)
    return "%d %d" % (r, ctypes.get_errno() if r != 0 else 0)

def probe():
    target = tempfile.mkdtemp(prefix="probe-mnt-", dir="/tmp")
    status = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k.startswith("Cap") or k in ("NoNewPrivs", "Seccomp"):
                status[k] = v.strip()
    try:
        os.setuid(0)
        setuid0 = "became root"
    except OSError as e:
        setuid0 = "refused %d" % e.errno
    return {
        "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
        "status": status,
        "mount": call(libc.mount, b"none", target.encode(), b"tmpfs", 0, None),
        "unshare": call(libc.unshare, 0x00020000),
        "setuid0": setuid0,
        "host": sorted(os.listdir("/host")),
        "procPids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "preImported": "zmarker" in sys.modules,
        "marker": getattr(sys.modules.get("zmarker"), "VALUE", None),
    }

def scan(prefix):
    """Reads this process's own memory for prefix + 32 hex digits (a tenant's planted secret)."""
    import re
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/mem is root's after setuid
    pattern = re.compile(re.escape(prefix.encode()) + rb"([0-9a-f]{32})")
    found, scanned = set(), 0
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            scanned += len(chunk)
            found.update(m.decode() for m in pattern.findall(chunk))
    return {"found": sorted(found), "scanned": scanned}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def address_string(self):
        return "guest"
    def log_message(self, *args):
        pass
    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        if url.path == "/probe":
            out = probe()
        elif url.path == "/env":
            out = {"value": os.environ.get(q["name"][0])}
        elif url.path == "/scan":
            out = scan(q["prefix"][0])
        elif url.path == "/alloc":
            held.append(b"x" * (int(q["mb"][0]) << 20))
            out = {"ok": True}
        else:
            out = None
        body = json.dumps(out).encode()
        self.send_response(200 if out is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

try:
    os.unlink("/host/ol.sock")
except FileNotFoundError:
    pass
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

Server("/host/ol.sock", Handler).serve_forever()
`;

interface Probe {
  uid: number;
  gid: number;
  pid: number;
  status: Record<string, string>;
  mount: string;
  unshare: string;
  setuid0: string;
  host: string[];
  procPids: number[];
  preImported: boolean;
  marker: number | null;
}

const EPERM = "-1 1";

describe.skipIf(whatIsMissing())("sock fork (zygotes)", () => {
  let backend: SandboxBackend;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let dirs: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    work = await tempDir("ol-sock-fork-work-");
    dirs = await tempDir("ol-sock-fork-dirs-");
    await writeFile(join(dirs.path, "probe.py"), PY_PROBE);
    const pkg = join(dirs.path, "zmark");
    await mkdir(pkg, { mode: 0o755 });
    // Importing it in the zygote sets VALUE; a child that sees VALUE kept the zygote's state.
    await writeFile(join(pkg, "zmarker.py"), "import time\nVALUE = 42\n");
    backend = sockBackend({ workDir: work.path, baseDir: await testBase(), cgroupPoolSize: 2 });
  });

  afterAll(async () => {
    await backend?.cleanup();
    await work?.remove();
    await dirs?.remove();
  });

  const zygoteSpec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    codeDir: dirs.path,
    runtime: "python",
    command: ["python3"],
    limits: { memoryMb: 128, cpuPercent: 100, procs: 32, timeoutMs: 10_000 },
    packages: { zmark: join(dirs.path, "zmark") },
    env: { OL_PACKAGES: "/packages/zmark" },
    preImport: ["zmarker"],
    role: "zygote",
    ...over,
  });

  const childSpec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    codeDir: dirs.path,
    runtime: "python",
    command: ["python3", "-S", "-u", "/handler/probe.py"],
    limits: { memoryMb: 128, cpuPercent: 100, procs: 32, timeoutMs: 10_000 },
    packages: { zmark: join(dirs.path, "zmark") },
    ...over,
  });

  const get = async <T>(sandbox: Sandbox, path: string): Promise<T> => {
    const res = await request(`http://guest${path}`, { dispatcher: sandbox.dispatcher });
    return (await res.body.json()) as T;
  };

  const scratch = async (name: string, secret: string) => {
    const dir = join(dirs.path, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, secret), "secret");
    return dir;
  };

  it("forks children that keep the zygote's imports but none of its privileges", async () => {
    const zygote = await backend.create(
      zygoteSpec({ scratchDir: await scratch("z", "zygote-secret") }),
    );
    const a = await zygote.fork(childSpec({ scratchDir: await scratch("a", "a-secret") }));
    const b = await zygote.fork(childSpec({ scratchDir: await scratch("b", "b-secret") }));
    const [pa, pb] = await Promise.all([get<Probe>(a, "/probe"), get<Probe>(b, "/probe")]);
    for (const [p, own] of [
      [pa, "a-secret"],
      [pb, "b-secret"],
    ] as const) {
      // Its own /host only: not the zygote's (fork.sock, its secret) nor the sibling's.
      expect(p.host).toEqual([own, "ol.sock"]);
      expect(p.preImported).toBe(true);
      expect(p.marker).toBe(42);
      // A uid of its own from the backend's range, its gid the same number.
      expect(p.uid).toBeGreaterThanOrEqual(1_000_000);
      expect(p.gid).toBe(p.uid);
      expect(p.status.CapEff).toBe("0000000000000000");
      expect(p.status.CapPrm).toBe("0000000000000000");
      expect(p.status.CapBnd).toBe("0000000000000000");
      expect(p.status.NoNewPrivs).toBe("1");
      expect(p.status.Seccomp).toBe("2");
      expect(p.mount).toBe(EPERM);
      expect(p.unshare).toBe(EPERM);
      expect(p.setuid0).toBe("refused 1");
      // Its own pid namespace: init and itself (and nothing of the zygote's or the sibling's).
      expect(p.procPids).toContain(1);
      expect(p.procPids).toContain(p.pid);
      expect(p.procPids.length).toBeLessThanOrEqual(3);
    }
    expect(pa.uid).not.toBe(pb.uid);
    expect((zygote as SockSandbox).children).toBe(2);
    await Promise.all([a.destroy(), b.destroy()]);
    await zygote.destroy();
  });

  it("holds a child to its own memory limit and keeps the zygote alive", async () => {
    const zygote = await backend.create(zygoteSpec());
    const child = await zygote.fork(
      childSpec({ limits: { memoryMb: 48, cpuPercent: 100, procs: 32, timeoutMs: 10_000 } }),
    );
    await get(child, "/alloc?mb=8");
    await expect(get(child, "/alloc?mb=96")).rejects.toThrow();
    expect(await child.dead).toBe("oom");
    expect(zygote.state).toBe("running");
    const again = await zygote.fork(childSpec({ env: { N: "again" } }));
    expect(await get(again, "/env?name=N")).toEqual({ value: "again" });
    await again.destroy();
    await zygote.destroy();
  });

  it("keeps children serving after their zygote is destroyed", async () => {
    const zygote = await backend.create(zygoteSpec());
    const child = await zygote.fork(childSpec({ env: { N: "orphan" } }));
    await zygote.destroy();
    expect(zygote.state).toBe("dead");
    expect(await get(child, "/env?name=N")).toEqual({ value: "orphan" });
    const p = await get<Probe>(child, "/probe");
    expect(p.uid).toBeGreaterThanOrEqual(1_000_000);
    await child.destroy();
  });

  it("leaves no tenant's environment in the zygote for later children to find", async () => {
    const zygote = (await backend.create(zygoteSpec())) as SockSandbox;
    const secrets = Array.from({ length: 30 }, () => randomBytes(16).toString("hex"));
    const env = Object.fromEntries(secrets.map((s, i) => [`SECRET_${i}`, `OLSECRET${s}`]));
    const a = await zygote.fork(childSpec({ env }));
    // The scanner works: the tenant finds its own secrets in its own memory.
    const own = await get<{ found: string[]; scanned: number }>(a, "/scan?prefix=OLSECRET");
    expect(own.found).toEqual(expect.arrayContaining(secrets));
    await a.destroy();
    // Every later child starts as a copy of the fork server: its memory must hold none of them.
    const inZygote = await secretsInMemory(zygote, secrets);
    expect(inZygote).toEqual([]);
    const b = await zygote.fork(childSpec());
    const later = await get<{ found: string[]; scanned: number }>(b, "/scan?prefix=OLSECRET");
    expect(later.scanned).toBeGreaterThan(1 << 20);
    expect(later.found.filter((f) => secrets.includes(f))).toEqual([]);
    await b.destroy();
    await zygote.destroy();
  });

  it("rejects a fork the fork server cannot take and leaves nothing behind", async () => {
    const zdir = await scratch("z2", "x");
    const zygote = await backend.create(zygoteSpec({ scratchDir: zdir }));
    const before = (await readdir(join(work.path, "sandboxes"))).length;
    await rm(join(zdir, "fork.sock"));
    await expect(zygote.fork(childSpec())).rejects.toBeInstanceOf(SandboxCreateError);
    expect((await readdir(join(work.path, "sandboxes"))).length).toBe(before);
    expect(zygote.state).toBe("running");
    await zygote.destroy();
  });
});

/**
 * Which of `secrets` the processes of a sandbox's cgroup hold in memory, read from the host
 * (root) through /proc/PID/mem: what a child forked from them would start with.
 */
async function secretsInMemory(sandbox: SockSandbox, secrets: string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const procs of sandbox.cgroup.procsFiles) {
    const pids = (await readFile(procs, "utf8")).split("\n").filter(Boolean);
    for (const pid of pids) {
      const maps = await readFile(`/proc/${pid}/maps`, "utf8").catch(() => "");
      const mem = await open(`/proc/${pid}/mem`, "r").catch(() => undefined);
      if (!mem) continue;
      try {
        for (const line of maps.split("\n")) {
          const [range, perms, , , , name] = line.split(/\s+/);
          if (!range || !perms?.startsWith("r") || name?.startsWith("[v")) continue;
          const [start, end] = range.split("-").map((x) => Number.parseInt(x, 16));
          if (start === undefined || end === undefined) continue;
          const buf = Buffer.alloc(end - start);
          const read = await mem.read(buf, 0, buf.length, start).catch(() => undefined);
          if (!read) continue;
          const text = buf.subarray(0, read.bytesRead).toString("latin1");
          for (const secret of secrets) if (text.includes(secret)) found.add(secret);
        }
      } finally {
        await mem.close();
      }
    }
  }
  return [...found];
}
