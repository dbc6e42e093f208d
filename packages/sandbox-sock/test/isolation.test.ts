import { writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:net";
import type { Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { sockBackend } from "../src/sock-backend.js";
import { PROBE_GUEST_SOURCE } from "./probe-guest.js";
import { tempDir, testBase, whatIsMissing } from "./support.js";

interface Probe {
  uid: number;
  gid: number;
  pid: number;
  status: Record<string, string>;
  procPids: number[];
  init: string;
  initCmdline: string;
  initEnviron: string;
  ioUring: string;
  rootEntries: string[];
  hostname: string;
  mount: string;
  umount: string;
  unshareUser: string;
  unshareNet: string;
  chroot: string;
  ptraceInit: string;
  setuid0: string;
  shadow: string;
  writeRoot: string;
  writeHandler: string;
  writeHost: string;
  tcp: string | null;
  hostHome: number | string;
}

const EPERM = "-1 1";

describe.skipIf(whatIsMissing())("sock isolation", () => {
  let backend: SandboxBackend;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let code: Awaited<ReturnType<typeof tempDir>>;
  let tcp: Server;
  let port: number;
  let accepted = 0;

  beforeAll(async () => {
    work = await tempDir("ol-sock-iso-work-");
    code = await tempDir("ol-sock-iso-code-");
    await writeFile(`${code.path}/guest.mjs`, PROBE_GUEST_SOURCE);
    backend = sockBackend({ workDir: work.path, baseDir: await testBase(), cgroupPoolSize: 2 });
    // A server on the host's loopback that a `network: none` guest must not reach.
    tcp = createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
    port = (tcp.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await backend?.cleanup();
    await new Promise((r) => tcp?.close(r));
    await work?.remove();
    await code?.remove();
  });

  const spec = (over: Partial<SandboxSpec> = {}): SandboxSpec => ({
    codeDir: code.path,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    limits: { memoryMb: 256, cpuPercent: 100, procs: 32, timeoutMs: 10_000 },
    ...over,
  });

  const probe = async (sandbox: Sandbox): Promise<Probe> => {
    const res = await request(`http://guest/probe?port=${port}`, {
      dispatcher: sandbox.dispatcher,
    });
    return (await res.body.json()) as Probe;
  };

  it("network none: no capability, no privilege, no host view, no mount, no unshare, no TCP to the host", async () => {
    const sandbox = await backend.create(spec({ network: "none" }));
    try {
      const p = await probe(sandbox);
      expect(p.uid).not.toBe(0);
      expect(p.gid).not.toBe(0);
      expect(p.status).toMatchObject({
        CapEff: "0000000000000000",
        CapPrm: "0000000000000000",
        CapBnd: "0000000000000000",
        NoNewPrivs: "1",
        Seccomp: "2",
      });
      // Its own pid namespace: the guest is pid 2 under the helper's init, and sees nothing else
      // of the host (python3 probes come and go, hence "at most a few").
      expect(p.pid).toBe(2);
      expect(p.init).toMatch(/ol-sock-helper$/);
      // pid 1's command line names no host path (worker dir, cgroups, code): those came on stdin.
      expect(p.initCmdline).toMatch(/^ol-sock-helper run --tag ol-[0-9a-f]+ --stdin-args$/);
      expect(p.initCmdline).not.toContain(code.path);
      expect(p.initCmdline).not.toContain(work.path);
      expect(p.initEnviron).toBe("EACCES");
      // io_uring's operations bypass seccomp: the rings cannot be set up at all.
      expect(p.ioUring).toBe(EPERM);
      expect(Math.max(...p.procPids)).toBeLessThan(50);
      expect(p.hostname).toBe("sandbox");
      // The root is the base: no host /root, /home or /etc/shadow, nothing writable but /host and /tmp.
      expect(p.rootEntries).not.toContain("root");
      expect(p.rootEntries).not.toContain("home");
      expect(p.hostHome).toBe("ENOENT");
      expect(p.shadow).toBe("ENOENT");
      expect(p.writeRoot).toMatch(/EROFS|EACCES/);
      expect(p.writeHandler).toMatch(/EROFS|EACCES/);
      expect(p.writeHost).toBe("wrote");
      // The seccomp filter refuses these with EPERM before the kernel's own checks.
      expect(p.mount).toBe(EPERM);
      expect(p.umount).toBe(EPERM);
      expect(p.unshareUser).toBe(EPERM);
      expect(p.unshareNet).toBe(EPERM);
      expect(p.chroot).toBe(EPERM);
      expect(p.ptraceInit).toBe(EPERM);
      expect(p.setuid0).toBe("refused 1");
      // Loopback is up inside (its own), but the host's 127.0.0.1 server is out of reach.
      expect(p.tcp).toBe("ECONNREFUSED");
      expect(accepted).toBe(0);
    } finally {
      await sandbox.destroy();
    }
  });

  it("network host: the same guest reaches the host's loopback (control for the test above)", async () => {
    const sandbox = await backend.create(spec({ network: "host" }));
    try {
      const p = await probe(sandbox);
      expect(p.tcp).toBe("connected");
      expect(p.uid).not.toBe(0);
    } finally {
      await sandbox.destroy();
    }
  });

  it("two sandboxes cannot see each other's processes or files", async () => {
    const [a, b] = await Promise.all([backend.create(spec()), backend.create(spec())]);
    try {
      const [pa, pb] = await Promise.all([probe(a!), probe(b!)]);
      expect(pa.pid).toBe(2);
      expect(pb.pid).toBe(2);
      expect(pa.procPids.length).toBeLessThan(8);
      expect(pb.procPids.length).toBeLessThan(8);
    } finally {
      await Promise.all([a?.destroy(), b?.destroy()]);
    }
  });

  it("exposes packages read-only under /packages/<name>", async () => {
    const pkg = await tempDir("ol-sock-iso-pkg-");
    try {
      await writeFile(`${pkg.path}/index.js`, "module.exports = 42;\n");
      const guest = `${PROBE_GUEST_SOURCE}\nimport { createRequire } from "node:module";\nconsole.log("pkg", createRequire(import.meta.url)("/packages/@scope/thing/index.js"));\n`;
      await writeFile(`${code.path}/pkg-guest.mjs`, guest);
      const sandbox = await backend.create(
        spec({
          command: ["node", "/handler/pkg-guest.mjs"],
          packages: { "@scope/thing": pkg.path },
        }),
      );
      try {
        // Guest output reaches the log through the helper, a moment after it is written.
        await vi.waitFor(async () => expect(await sandbox.logs()).toContain("pkg 42"), {
          timeout: 2000,
        });
      } finally {
        await sandbox.destroy();
      }
    } finally {
      await pkg.remove();
    }
  });
});
