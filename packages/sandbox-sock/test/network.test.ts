import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import type { Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { egressNames } from "../src/network/egress.js";
import { sockBackend } from "../src/sock-backend.js";
import { workerTag } from "../src/worker-tag.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

/**
 * A guest that reports what it can reach. Every probe only opens TCP connections to addresses
 * the test itself made listen (or made sure nothing else answers): if isolation fails, the
 * traffic lands on the test's own listeners, never anywhere else.
 */
const NET_GUEST = `
import { createServer } from "node:http";
import { createServer as tcpServer, connect } from "node:net";
import { networkInterfaces } from "node:os";
import { rmSync } from "node:fs";
const tryConnect = (host, port) => new Promise((resolve) => {
  const s = connect({ host, port, timeout: 1500 });
  s.once("connect", () => { s.destroy(); resolve("connected"); });
  s.once("timeout", () => { s.destroy(); resolve("timeout"); });
  s.once("error", (e) => resolve(e.code));
});
const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://guest");
  const q = (k) => url.searchParams.get(k);
  const json = (v) => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify(v)); };
  if (url.pathname === "/connect") return json({ result: await tryConnect(q("host"), Number(q("port"))) });
  if (url.pathname === "/ifaces") return json(networkInterfaces());
  if (url.pathname === "/listen") {
    const s = tcpServer((c) => c.end("hi"));
    s.listen(Number(q("port")), "0.0.0.0", () => json({ listening: true }));
    return;
  }
  res.writeHead(404); res.end();
});
try { rmSync("/host/ol.sock", { force: true }); } catch {}
server.listen("/host/ol.sock");
`;

/** A TCP listener that counts who connects. */
async function countingListener(
  host: string,
): Promise<{ port: number; count: () => number; server: Server }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { port: (server.address() as AddressInfo).port, count: () => n, server };
}

const ip = (...args: string[]) =>
  execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();

function hostTcp(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: 1500 });
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("timeout", () => {
      s.destroy();
      resolve("timeout");
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
  });
}

describe.skipIf(whatIsMissing())("sock network egress", () => {
  let backend: SandboxBackend;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let code: Awaited<ReturnType<typeof tempDir>>;
  // "The internet": a network namespace of the test's own, routed from the host.
  const id = randomBytes(2).toString("hex");
  const inetNs = `ol-test-inet-${id}`;
  const inetLink = `oti${id}`;
  const octet = 18 + (Number.parseInt(id, 16) % 200);
  const inetHost = `198.18.${octet}.1`;
  const inetAddr = `198.18.${octet}.2`;
  const linkLocal = "169.254.77.2";
  let inetServer: ChildProcess;
  const inetSeen: string[] = [];
  let onHostLoopback: Awaited<ReturnType<typeof countingListener>>;
  let onHostAny: Awaited<ReturnType<typeof countingListener>>;

  beforeAll(async () => {
    ip("netns", "add", inetNs);
    ip("link", "add", inetLink, "type", "veth", "peer", "name", "eth0", "netns", inetNs);
    ip("addr", "add", `${inetHost}/24`, "dev", inetLink);
    ip("link", "set", inetLink, "up");
    ip("-n", inetNs, "addr", "add", `${inetAddr}/24`, "dev", "eth0");
    ip("-n", inetNs, "addr", "add", `${linkLocal}/32`, "dev", "eth0");
    ip("-n", inetNs, "link", "set", "eth0", "up");
    ip("-n", inetNs, "link", "set", "lo", "up");
    ip("-n", inetNs, "route", "add", "default", "via", inetHost);
    // If the egress firewall let link-local through, the packets would reach this test host.
    ip("route", "add", `${linkLocal}/32`, "via", inetAddr);
    inetServer = spawn(
      "ip",
      [
        "netns",
        "exec",
        inetNs,
        process.execPath,
        "-e",
        `const net = require("node:net");
         for (const [host, port] of [["${inetAddr}", 8081], ["${linkLocal}", 8082]])
           net.createServer((s) => { s.on("error", () => {}); console.log(host); s.end("hello from the internet"); }).listen(port, host, () => console.log("up " + host));`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    inetServer.stdout?.setEncoding("utf8");
    inetServer.stdout?.on("data", (chunk: string) => inetSeen.push(...chunk.trim().split("\n")));
    const deadline = Date.now() + 10_000;
    while (inetSeen.filter((l) => l.startsWith("up ")).length < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    onHostLoopback = await countingListener("127.0.0.1");
    onHostAny = await countingListener("0.0.0.0");
    work = await tempDir("ol-sock-net-work-");
    code = await tempDir("ol-sock-net-code-");
    await writeFile(`${code.path}/guest.mjs`, NET_GUEST);
    backend = sockBackend({
      workDir: work.path,
      baseDir: await testBase(),
      cgroupPoolSize: 2,
      egress: { poolSize: 2 },
    });
  }, 30_000);

  afterAll(async () => {
    await backend?.cleanup();
    inetServer?.kill("SIGKILL");
    onHostLoopback?.server.close();
    onHostAny?.server.close();
    try {
      ip("route", "del", `${linkLocal}/32`);
    } catch {}
    try {
      ip("netns", "delete", inetNs);
    } catch {}
    await work?.remove();
    await code?.remove();
  });

  const spec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    codeDir: code.path,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    limits: { memoryMb: 256, cpuPercent: 100, procs: 32, timeoutMs: 10_000 },
    network: "egress",
    ...over,
  });
  const get = async <T>(sandbox: Sandbox, path: string): Promise<T> =>
    (await (
      await request(`http://guest${path}`, { dispatcher: sandbox.dispatcher })
    ).body.json()) as T;
  const reach = async (sandbox: Sandbox, host: string, port: number) =>
    (await get<{ result: string }>(sandbox, `/connect?host=${host}&port=${port}`)).result;
  const addressOf = async (sandbox: Sandbox) => {
    const ifaces = await get<Record<string, { family: string; address: string }[]>>(
      sandbox,
      "/ifaces",
    );
    return {
      names: Object.keys(ifaces).sort(),
      address: ifaces.eth0?.find((a) => a.family === "IPv4")?.address,
    };
  };

  it("reaches the outside world, and nothing of the host, other sandboxes or link-local", async () => {
    const [a, b] = await Promise.all([backend.create(spec()), backend.create(spec())]);
    try {
      const [ia, ib] = await Promise.all([addressOf(a), addressOf(b)]);
      // Its own interfaces only: no view of the host's.
      expect(ia.names).toEqual(["eth0", "lo"]);
      expect(ia.address).toMatch(/^10\.201\./);
      expect(ib.address).not.toBe(ia.address);
      await get(b, "/listen?port=8080");
      const gateway = (ia.address as string).replace(/\.(\d+)$/, (_m, d) => `.${Number(d) - 1}`);
      const [internet, loopback, viaGateway, viaHostAddr, metadata, sibling] = await Promise.all([
        reach(a, inetAddr, 8081),
        reach(a, "127.0.0.1", onHostLoopback.port),
        reach(a, gateway, onHostAny.port),
        reach(a, inetHost, onHostAny.port),
        reach(a, linkLocal, 8082),
        reach(a, ib.address as string, 8080),
      ]);
      expect(internet).toBe("connected");
      expect(inetSeen).toContain(inetAddr);
      // 127.0.0.1 is the sandbox's own loopback, where nothing listens.
      expect(loopback).toBe("ECONNREFUSED");
      expect(onHostLoopback.count()).toBe(0);
      // The host's addresses (its end of the link, any other): dropped, the worker's ports too.
      expect(viaGateway).not.toBe("connected");
      expect(viaHostAddr).not.toBe("connected");
      expect(onHostAny.count()).toBe(0);
      expect(metadata).not.toBe("connected");
      expect(inetSeen).not.toContain(linkLocal);
      expect(sibling).not.toBe("connected");
      // And the host opens no connection into a sandbox either.
      expect(await hostTcp(ib.address as string, 8080)).not.toBe("connected");
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
  }, 60_000);

  it("takes namespaces made ahead of time and deletes each with its sandbox", async () => {
    const prefix = egressNames(workerTag(work.path)).netnsPrefix;
    const ours = () => readdirSync("/run/netns").filter((n) => n.startsWith(prefix));
    const deadline = Date.now() + 10_000;
    while (ours().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const pooled = ours();
    expect(pooled.length).toBeGreaterThanOrEqual(2);
    const sandbox = await backend.create(spec());
    // Its namespace was one of the ready ones.
    const link = ip("-o", "link", "show").split("\n");
    expect(link.length).toBeGreaterThan(0);
    const { address } = await addressOf(sandbox);
    expect(address).toBeDefined();
    const before = ours();
    await sandbox.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const after = ours();
    expect(before.filter((n) => !after.includes(n)).length).toBeGreaterThanOrEqual(1);
    expect(pooled.some((n) => !after.includes(n))).toBe(true);
  });

  it("gives two workers on one host links of different addresses, from one subnet", async () => {
    const otherWork = await tempDir("ol-sock-net-other-");
    const other = sockBackend({
      workDir: otherWork.path,
      baseDir: await testBase(),
      egress: { poolSize: 1 },
    });
    try {
      const [a, b] = await Promise.all([backend.create(spec()), other.create(spec())]);
      const [ia, ib] = await Promise.all([addressOf(a), addressOf(b)]);
      expect(ia.address).toMatch(/^10\.201\./);
      expect(ib.address).toMatch(/^10\.201\./);
      expect(ib.address).not.toBe(ia.address);
      // Each still reaches the outside world through its own link.
      expect(await reach(b, inetAddr, 8081)).toBe("connected");
      await Promise.all([a.destroy(), b.destroy()]);
    } finally {
      await other.cleanup();
      await otherWork.remove();
    }
  });

  it("cleanup removes every namespace and the firewall chains", async () => {
    const names = egressNames(workerTag(work.path));
    await backend.cleanup();
    expect(readdirSync("/run/netns").filter((n) => n.startsWith(names.netnsPrefix))).toEqual([]);
    const rules = execFileSync("iptables", ["-w", "-S"]).toString();
    expect(rules).not.toContain(names.chains.forward);
    expect(rules).not.toContain(names.chains.input);
  });
});
