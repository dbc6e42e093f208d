/**
 * The conformance guest: a dependency-free Node.js HTTP/1.1 server on `/host/ol.sock`.
 * Backends run it as `node /handler/guest.mjs`; the fake backend imports it in-process.
 * Kept as source text so that the suite can write it into any code dir, built or not.
 *
 * Routes: GET /ping, ANY /echo, GET /env?name=, GET /whoami, GET /counter, GET /alloc?mb=,
 * GET /spawn?n=, GET /exit?code=, GET /slow?ms=, GET /burn?ms= (keeps one core busy for ms, at
 * most 10 s), GET /read?path=, GET /fill?path=&mb= (writes a file of mb MiB, says how much it
 * wrote and why it stopped), GET /unlink?path=, GET /relink?target= (replaces its own socket
 * with a symbolic link to target and drops its connections), GET /cmdlines (every process's
 * command line it can read), GET /connect?host=&port= (TCP, 1.5 s), GET /gateway (its
 * default route's). With OL_CONFORMANCE_LINK_SOCKET=target it never listens:
 * it puts a link to target where its socket belongs, as a guest attacking the worker would.
 */
export const CONFORMANCE_GUEST_SOURCE = `
import { createServer } from "node:http";
import { spawn } from "node:child_process";
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeSync } from "node:fs";
import { connect } from "node:net";

export function start(options = {}) {
  const socketPath = options.socketPath ?? process.env.OL_GUEST_SOCKET ?? "/host/ol.sock";
  const env = options.env ?? process.env;
  const exit = options.exit ?? ((code) => process.exit(code));
  const held = [];
  let counter = 0;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://guest");
    const q = (k) => url.searchParams.get(k);
    const json = (status, value) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(value));
    };
    try {
      switch (url.pathname) {
        case "/ping":
          res.end("pong");
          return;
        case "/echo": {
          const chunks = [];
          for await (const c of req) chunks.push(c);
          json(200, { method: req.method, path: url.pathname, query: url.search, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
          return;
        }
        case "/env":
          json(200, { value: env[q("name") ?? ""] ?? null });
          return;
        case "/whoami":
          json(200, { uid: process.getuid ? process.getuid() : -1, gid: process.getgid ? process.getgid() : -1, pid: process.pid });
          return;
        case "/counter":
          counter += 1;
          json(200, { counter });
          return;
        case "/alloc": {
          const mb = Number(q("mb") ?? "0");
          for (let i = 0; i < mb; i++) {
            const b = Buffer.alloc(1024 * 1024, i % 251);
            held.push(b);
          }
          json(200, { allocatedMb: mb });
          return;
        }
        case "/spawn": {
          const n = Number(q("n") ?? "1");
          let started = 0;
          let failed = 0;
          const kids = [];
          for (let i = 0; i < n; i++) {
            const ok = await new Promise((resolve) => {
              let child;
              try {
                child = spawn("sleep", ["3"], { stdio: "ignore" });
              } catch {
                resolve(false);
                return;
              }
              child.once("spawn", () => resolve(true));
              child.once("error", () => resolve(false));
              kids.push(child);
            });
            if (ok) started++;
            else failed++;
          }
          for (const k of kids) try { k.kill("SIGKILL"); } catch {}
          json(200, { started, failed });
          return;
        }
        case "/exit":
          res.end("bye");
          setTimeout(() => exit(Number(q("code") ?? "3")), 5);
          return;
        case "/slow":
          await new Promise((r) => setTimeout(r, Number(q("ms") ?? "100")));
          res.end("slow");
          return;
        case "/burn": {
          const until = Date.now() + Math.min(Number(q("ms") ?? "100"), 10000);
          let spins = 0;
          while (Date.now() < until) spins++;
          json(200, { spins });
          return;
        }
        case "/read":
          try {
            json(200, { ok: true, text: readFileSync(q("path") ?? "", "utf8").slice(0, 200) });
          } catch (e) {
            json(200, { ok: false, code: e.code });
          }
          return;
        case "/fill": {
          const mb = Number(q("mb") ?? "1");
          const chunk = Buffer.alloc(1024 * 1024, 7);
          let written = 0;
          let code = null;
          let fd;
          try {
            fd = openSync(q("path") ?? "", "w");
            while (written < mb * chunk.length) written += writeSync(fd, chunk);
            fsyncSync(fd);
          } catch (e) {
            code = e.code ?? String(e);
          } finally {
            if (fd !== undefined) try { closeSync(fd); } catch (e) { code ??= e.code; }
          }
          json(200, { writtenMb: written / chunk.length, code });
          return;
        }
        case "/unlink":
          rmSync(q("path") ?? "", { force: true });
          json(200, { removed: true });
          return;
        case "/relink":
          rmSync(socketPath, { force: true });
          symlinkSync(q("target") ?? "/nonexistent", socketPath);
          res.setHeader("connection", "close");
          json(200, { relinked: true });
          setTimeout(() => server.closeAllConnections(), 5);
          return;
        case "/connect": {
          const result = await new Promise((resolve) => {
            const s = connect({ host: q("host"), port: Number(q("port")), timeout: 1500 });
            s.once("connect", () => { s.destroy(); resolve("connected"); });
            s.once("timeout", () => { s.destroy(); resolve("timeout"); });
            s.once("error", (e) => resolve(e.code));
          });
          json(200, { result });
          return;
        }
        case "/gateway": {
          // The default route's gateway, from /proc/net/route (hex, little-endian).
          let gateway = null;
          try {
            for (const line of readFileSync("/proc/net/route", "utf8").split("\\n").slice(1)) {
              const f = line.trim().split(/\\s+/);
              if (f[1] === "00000000" && f[2] && f[2] !== "00000000")
                gateway = [0, 1, 2, 3].map((i) => parseInt(f[2].slice(6 - 2 * i, 8 - 2 * i), 16)).join(".");
            }
          } catch {}
          json(200, { gateway });
          return;
        }
        case "/cmdlines": {
          const lines = [];
          for (const pid of readdirSync("/proc").filter((p) => /^[0-9]+$/.test(p))) {
            try {
              lines.push(readFileSync("/proc/" + pid + "/cmdline", "utf8").split("\\0").join(" "));
            } catch {}
          }
          json(200, { lines });
          return;
        }
        default:
          json(404, { error: "no route " + url.pathname });
      }
    } catch (e) {
      json(500, { error: String(e && e.stack || e) });
    }
  });
  try { rmSync(socketPath, { force: true }); } catch {}
  const link = env.OL_CONFORMANCE_LINK_SOCKET;
  if (link) {
    symlinkSync(link, socketPath);
    // Stays alive without listening: the worker must refuse the link, not wait for an exit.
    const alive = setInterval(() => {}, 1 << 30);
    return Promise.resolve({ close: async () => clearInterval(alive) });
  }
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve({ close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) }));
  });
}

if (import.meta.url.startsWith("file:")) {
  start().catch((e) => { console.error(e); process.exit(1); });
}
`;
