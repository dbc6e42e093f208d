/**
 * A probe guest: serves HTTP/1.1 on /host/ol.sock and reports what it tried to do from inside
 * the sandbox. Every probe is harmless even where isolation failed: the mount target is a fresh
 * dir under the sandbox's own /tmp, the TCP target a server the test opened for this purpose.
 */
export const PROBE_GUEST_SOURCE = String.raw`
import { createServer, } from "node:http";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";

const py = (code) => {
  const r = spawnSync("python3", ["-c", code], { encoding: "utf8" });
  return (r.stdout || "").trim() || ("error: " + (r.stderr || r.error));
};
const libc = "import ctypes; libc = ctypes.CDLL(None, use_errno=True); ";
const tryConnect = (port) => new Promise((resolve) => {
  const s = connect({ host: "127.0.0.1", port, timeout: 2000 });
  s.once("connect", () => { s.destroy(); resolve("connected"); });
  s.once("timeout", () => { s.destroy(); resolve("timeout"); });
  s.once("error", (e) => resolve(e.code));
});
const status = () => Object.fromEntries(readFileSync("/proc/self/status", "utf8").split("\n")
  .filter((l) => /^(Cap|NoNewPrivs|Seccomp)/.test(l)).map((l) => l.split(/:\s+/)));

const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://guest");
  const json = (v) => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify(v)); };
  if (url.pathname === "/ping") return res.end("pong");
  if (url.pathname === "/probe") {
    mkdirSync("/tmp/probe-mnt", { recursive: true });
    const out = {
      uid: process.getuid(), gid: process.getgid(), pid: process.pid,
      status: status(),
      procPids: readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number),
      init: readFileSync("/proc/1/cmdline", "utf8").split("\0")[0],
      initCmdline: readFileSync("/proc/1/cmdline", "utf8").split("\0").join(" ").trim(),
      initEnviron: (() => { try { readFileSync("/proc/1/environ"); return "read"; } catch (e) { return e.code; } })(),
      ioUring: py(libc + "p = ctypes.create_string_buffer(120); r = libc.syscall(425, 8, p); print(r, ctypes.get_errno())"),
      rootEntries: readdirSync("/").sort(),
      hostname: readFileSync("/proc/sys/kernel/hostname", "utf8").trim(),
      mount: py(libc + "r = libc.mount(b'none', b'/tmp/probe-mnt', b'tmpfs', 0, None); print(r, ctypes.get_errno())"),
      umount: py(libc + "r = libc.umount2(b'/handler', 2); print(r, ctypes.get_errno())"),
      unshareUser: py(libc + "r = libc.unshare(0x10000000); print(r, ctypes.get_errno())"),
      unshareNet: py(libc + "r = libc.unshare(0x40000000); print(r, ctypes.get_errno())"),
      chroot: py(libc + "r = libc.chroot(b'/tmp'); print(r, ctypes.get_errno())"),
      ptraceInit: py(libc + "r = libc.ptrace(16, 1, None, None); print(r, ctypes.get_errno())"),
      setuid0: py("import os\ntry:\n  os.setuid(0); print('became root')\nexcept OSError as e: print('refused', e.errno)"),
      shadow: (() => { try { readFileSync("/etc/shadow"); return "read"; } catch (e) { return e.code; } })(),
      writeRoot: (() => { try { writeFileSync("/usr/probe", "x"); return "wrote"; } catch (e) { return e.code; } })(),
      writeHandler: (() => { try { writeFileSync("/handler/probe", "x"); return "wrote"; } catch (e) { return e.code; } })(),
      writeHost: (() => { try { writeFileSync("/host/probe", "x"); rmSync("/host/probe"); return "wrote"; } catch (e) { return e.code; } })(),
      tcp: url.searchParams.get("port") ? await tryConnect(Number(url.searchParams.get("port"))) : null,
      hostHome: (() => { try { return readdirSync("/root").length; } catch (e) { return e.code; } })(),
    };
    return json(out);
  }
  if (url.pathname === "/bomb") {
    // Forks without end, each child staying alive: only the pids limit stops it (the test
    // destroys the sandbox, which kills them all).
    spawn("sh", ["-c", "while :; do sleep 60 & done"], { stdio: "ignore", detached: true }).unref();
    return json({ started: true });
  }
  if (url.pathname === "/alloc") {
    const held = (globalThis.held ??= []);
    for (let i = 0; i < Number(url.searchParams.get("mb")); i++) held.push(Buffer.alloc(1 << 20, i % 251));
    return json({ ok: true });
  }
  res.writeHead(404); res.end();
});
try { rmSync("/host/ol.sock", { force: true }); } catch {}
server.listen("/host/ol.sock");
`;
