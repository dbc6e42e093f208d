import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuestSocketUnsafeError, InvalidSpecError, SandboxDeadError } from "../errors.js";
import type { Sandbox, SandboxBackend, SandboxEvent, SandboxSpec } from "../types.js";
import { CONFORMANCE_GUEST_SOURCE } from "./guest-source.js";

export { CONFORMANCE_GUEST_SOURCE } from "./guest-source.js";

/** Checks a backend may skip, each for a documented reason. */
export type ConformanceCheck =
  | "pause-freezes"
  | "memory-limit"
  | "procs-limit"
  | "disk-limit"
  | "network-none"
  | "network-egress"
  | "unprivileged-guest"
  | "stats-memory"
  | "host-paths-hidden"
  | "uid-per-sandbox"
  | "cpu-groups"
  | "cpu-group-join"
  | "fork";

export interface ConformanceOptions {
  /** Shown in the describe block. */
  readonly name: string;
  /** Makes the backend under test; called once, `cleanup()` is called at the end. */
  readonly backend: () => SandboxBackend | Promise<SandboxBackend>;
  /** argv that runs the guest script inside the sandbox (default `node /handler/guest.mjs`). */
  readonly command?: readonly string[];
  /** Checks to skip, with why. Checks of capabilities the backend does not claim skip anyway. */
  readonly skip?: Partial<Record<ConformanceCheck, string>>;
  /** Per-test timeout; real backends need more than the fake. */
  readonly timeoutMs?: number;
}

/**
 * Runs the sandbox contract's conformance suite against a backend, inside the caller's vitest
 * run: `runSandboxConformance({ name: "mine", backend: () => myBackend() })` in a test file.
 * Every check says in its name what it proves; skipped checks say why in theirs.
 */
export function runSandboxConformance(options: ConformanceOptions): void {
  const timeout = options.timeoutMs ?? 20_000;
  let backend: SandboxBackend;
  let codeDir: string;
  const events: SandboxEvent[] = [];
  const command = options.command ?? ["node", "/handler/guest.mjs"];

  const spec = (overrides: Partial<SandboxSpec> = {}): SandboxSpec => ({
    codeDir,
    runtime: "node",
    command,
    limits: { memoryMb: 256, cpuPercent: 100, procs: 64, timeoutMs: 10_000 },
    ...overrides,
  });

  const get = async (
    sandbox: Sandbox,
    path: string,
    init: { method?: "GET" | "POST"; body?: string } = {},
  ) => {
    const res = await request(`http://guest${path}`, {
      dispatcher: sandbox.dispatcher,
      method: init.method ?? "GET",
      ...(init.body === undefined ? {} : { body: init.body }),
    });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const getJson = async <T>(sandbox: Sandbox, path: string): Promise<T> =>
    JSON.parse((await get(sandbox, path)).text) as T;

  /**
   * A check tied to a capability. Skipped with the reason in its title when the caller says so;
   * skipped at run time (the backend is made in beforeAll) when the backend does not claim it.
   */
  const check = (
    name: ConformanceCheck,
    claimed: (b: SandboxBackend) => boolean,
    title: string,
    fn: () => Promise<void>,
  ) => {
    const reason = options.skip?.[name];
    if (reason) {
      it.skip(`${title} [skipped: ${reason}]`, fn);
      return;
    }
    it(
      title,
      async (ctx) => {
        if (!claimed(backend)) {
          ctx.skip(`${backend.name} does not claim this capability`);
          return;
        }
        await fn();
      },
      timeout,
    );
  };

  describe(`sandbox conformance: ${options.name}`, () => {
    beforeAll(async () => {
      backend = await options.backend();
      backend.on((e) => events.push(e));
      codeDir = await mkdtemp(join(tmpdir(), "ol-conformance-code-"));
      await writeFile(join(codeDir, "guest.mjs"), CONFORMANCE_GUEST_SOURCE);
    }, timeout);

    afterAll(async () => {
      await backend?.cleanup();
      if (codeDir) await rm(codeDir, { recursive: true, force: true });
    }, timeout);

    it(
      "creates a running sandbox whose guest answers through the dispatcher",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          expect(sandbox.state).toBe("running");
          expect(typeof sandbox.id).toBe("string");
          expect(sandbox.spec.codeDir).toBe(codeDir);
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
        } finally {
          await sandbox.destroy();
        }
      },
      timeout,
    );

    it(
      "carries method, path, query and body to the guest and back, with keep-alive",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          for (let i = 0; i < 3; i++) {
            const res = await get(sandbox, `/echo?i=${i}`, { method: "POST", body: `hello ${i}` });
            const echoed = JSON.parse(res.text) as { method: string; query: string; body: string };
            expect(echoed).toMatchObject({ method: "POST", query: `?i=${i}`, body: `hello ${i}` });
          }
        } finally {
          await sandbox.destroy();
        }
      },
      timeout,
    );

    it(
      "passes the spec's env to the guest",
      async () => {
        const sandbox = await backend.create(spec({ env: { OL_CONFORMANCE: "yes-42" } }));
        try {
          expect(await getJson(sandbox, "/env?name=OL_CONFORMANCE")).toEqual({ value: "yes-42" });
        } finally {
          await sandbox.destroy();
        }
      },
      timeout,
    );

    it(
      "pauses and unpauses, keeping the guest's state; double pause/unpause are no-ops",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          expect(await getJson(sandbox, "/counter")).toEqual({ counter: 1 });
          await sandbox.pause();
          await sandbox.pause();
          expect(sandbox.state).toBe("paused");
          await sandbox.unpause();
          await sandbox.unpause();
          expect(sandbox.state).toBe("running");
          expect(await getJson(sandbox, "/counter")).toEqual({ counter: 2 });
        } finally {
          await sandbox.destroy();
        }
      },
      timeout,
    );

    check(
      "pause-freezes",
      (b) => b.capabilities.pause,
      "a paused guest does not answer until unpaused",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          await sandbox.pause();
          let answered = false;
          const pending = get(sandbox, "/ping").then((r) => {
            answered = true;
            return r;
          });
          await sleep(500);
          expect(answered).toBe(false);
          await sandbox.unpause();
          expect(await pending).toEqual({ status: 200, text: "pong" });
        } finally {
          await sandbox.destroy();
        }
      },
    );

    it(
      "destroy is idempotent; every call after it rejects with SandboxDeadError",
      async () => {
        const sandbox = await backend.create(spec());
        await Promise.all([sandbox.destroy(), sandbox.destroy()]);
        await sandbox.destroy();
        expect(sandbox.state).toBe("dead");
        expect(await sandbox.dead).toBe("requested");
        await expect(sandbox.pause()).rejects.toBeInstanceOf(SandboxDeadError);
        await expect(sandbox.unpause()).rejects.toBeInstanceOf(SandboxDeadError);
        await expect(sandbox.stats()).rejects.toBeInstanceOf(SandboxDeadError);
        await expect(sandbox.fork(spec())).rejects.toBeInstanceOf(SandboxDeadError);
        await expect(get(sandbox, "/ping")).rejects.toBeInstanceOf(SandboxDeadError);
        expect(await sandbox.destroyIfPaused()).toBe(false);
      },
      timeout,
    );

    it(
      "destroyIfPaused destroys only a paused sandbox",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          expect(await sandbox.destroyIfPaused()).toBe(false);
          expect(sandbox.state).toBe("running");
          await sandbox.pause();
          expect(await sandbox.destroyIfPaused("evicted")).toBe(true);
          expect(sandbox.state).toBe("dead");
          expect(sandbox.deathReason).toBe("evicted");
        } finally {
          await sandbox.destroy();
        }
      },
      timeout,
    );

    it(
      "reports a guest that exits on its own as dead, and refuses further requests",
      async () => {
        const sandbox = await backend.create(spec());
        await get(sandbox, "/exit?code=3");
        const reason = await Promise.race([
          sandbox.dead,
          sleep(timeout / 2).then(() => "still alive"),
        ]);
        expect(reason).not.toBe("still alive");
        expect(sandbox.state).toBe("dead");
        await expect(get(sandbox, "/ping")).rejects.toBeInstanceOf(SandboxDeadError);
      },
      timeout,
    );

    it(
      "emits created, paused, unpaused and destroyed events in order",
      async () => {
        const sandbox = await backend.create(spec());
        await sandbox.pause();
        await sandbox.unpause();
        await sandbox.destroy();
        const mine = events
          .filter((e) => "sandboxId" in e && e.sandboxId === sandbox.id)
          .map((e) => e.type);
        expect(mine).toEqual(["created", "paused", "unpaused", "destroyed"]);
      },
      timeout,
    );

    it(
      "creates sandboxes concurrently, each with its own guest",
      async () => {
        const sandboxes = await Promise.all(
          [0, 1, 2, 3].map((i) => backend.create(spec({ env: { N: String(i) } }))),
        );
        try {
          expect(new Set(sandboxes.map((s) => s.id)).size).toBe(4);
          const values = await Promise.all(
            sandboxes.map((s) => getJson<{ value: string }>(s, "/env?name=N")),
          );
          expect(values.map((v) => v.value)).toEqual(["0", "1", "2", "3"]);
        } finally {
          await Promise.all(sandboxes.map((s) => s.destroy()));
        }
      },
      timeout,
    );

    it(
      "refuses an invalid spec with InvalidSpecError naming the field",
      async () => {
        const bad = { ...spec(), limits: { ...spec().limits, memoryMb: -1 } };
        await expect(backend.create(bad)).rejects.toBeInstanceOf(InvalidSpecError);
        await expect(backend.create(bad)).rejects.toThrow(/limits\.memoryMb/);
        await expect(backend.create({ ...spec(), codeDir: "relative/dir" })).rejects.toThrow(
          /codeDir/,
        );
      },
      timeout,
    );

    it(
      "reports stats of a live sandbox",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          const stats = await sandbox.stats();
          expect(stats.pids).toBeGreaterThanOrEqual(1);
          expect(stats.memoryLimitBytes).toBe(256 * 1024 * 1024);
          expect(stats.cpuUsageUs).toBeGreaterThanOrEqual(0);
        } finally {
          await sandbox.destroy();
        }
      },
      timeout,
    );

    check(
      "stats-memory",
      (b) => b.capabilities.limits.memory,
      "stats count the guest's memory",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          const before = (await sandbox.stats()).memoryBytes;
          await get(sandbox, "/alloc?mb=40");
          const after = (await sandbox.stats()).memoryBytes;
          expect(after - before).toBeGreaterThan(30 * 1024 * 1024);
        } finally {
          await sandbox.destroy();
        }
      },
    );

    check(
      "memory-limit",
      (b) => b.capabilities.limits.memory,
      "kills a guest that allocates past its memory limit and reports it dead",
      async () => {
        const sandbox = await backend.create(spec({ limits: { ...spec().limits, memoryMb: 96 } }));
        await get(sandbox, "/alloc?mb=400").catch(() => undefined);
        const reason = await Promise.race([
          sandbox.dead,
          sleep(timeout / 2).then(() => "still alive"),
        ]);
        expect(reason).toBe("oom");
        await expect(get(sandbox, "/ping")).rejects.toBeInstanceOf(SandboxDeadError);
      },
    );

    check(
      "procs-limit",
      (b) => b.capabilities.limits.procs,
      "stops process creation at the procs limit",
      async () => {
        const sandbox = await backend.create(spec({ limits: { ...spec().limits, procs: 24 } }));
        try {
          const result = await getJson<{ started: number; failed: number }>(sandbox, "/spawn?n=40");
          expect(result.failed).toBeGreaterThan(0);
          expect(result.started).toBeLessThan(24);
          // The guest survives hitting the limit.
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
        } finally {
          await sandbox.destroy();
        }
      },
    );

    check(
      "disk-limit",
      (b) => b.capabilities.limits.disk === true,
      "refuses writes past the disk limit into /tmp and /host together with ENOSPC, and keeps serving",
      async () => {
        const diskMb = 16;
        const sandbox = await backend.create(spec({ limits: { ...spec().limits, diskMb } }));
        type Fill = { writtenMb: number; code: string | null };
        const fill = (path: string) =>
          getJson<Fill>(sandbox, `/fill?path=${path}&mb=${2 * diskMb}`);
        const full = (r: Fill) => r.code === "ENOSPC" || r.code === "EDQUOT";
        try {
          for (const dir of ["/tmp", "/host"]) {
            const r = await fill(`${dir}/fill`);
            expect(full(r), `${dir}: ${JSON.stringify(r)}`).toBe(true);
            expect(r.writtenMb).toBeLessThanOrEqual(diskMb);
            // Stopped by the limit, not by anything much smaller.
            expect(r.writtenMb).toBeGreaterThan(diskMb / 2);
            await get(sandbox, `/unlink?path=${dir}/fill`);
          }
          // One budget for both: with /tmp full, /host has next to no room left.
          expect(full(await fill("/tmp/fill"))).toBe(true);
          const host = await fill("/host/fill");
          expect(full(host)).toBe(true);
          expect(host.writtenMb).toBeLessThan(diskMb / 2);
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
          expect(sandbox.state).toBe("running");
        } finally {
          await sandbox.destroy();
        }
      },
    );

    check(
      "unprivileged-guest",
      () => true,
      "runs the guest with a uid other than 0",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          const who = await getJson<{ uid: number }>(sandbox, "/whoami");
          expect(who.uid).not.toBe(0);
        } finally {
          await sandbox.destroy();
        }
      },
    );

    check(
      "network-none",
      (b) => b.capabilities.networkModes.includes("none"),
      "accepts network none and still serves over the socket",
      async () => {
        const sandbox = await backend.create(spec({ network: "none" }));
        try {
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
        } finally {
          await sandbox.destroy();
        }
      },
    );

    check(
      "network-egress",
      (b) => b.capabilities.networkModes.includes("egress"),
      "network egress: nothing on the host is reachable, its loopback nor its addresses",
      async () => {
        const listener = await countingTcpListener();
        const sandbox = await backend.create(spec({ network: "egress" }));
        try {
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
          const { gateway } = await getJson<{ gateway: string | null }>(sandbox, "/gateway");
          // Its own network: a route out, through a gateway that is not the host's loopback.
          expect(gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
          const results = await Promise.all(
            ["127.0.0.1", gateway as string].map(
              async (host) =>
                (
                  await getJson<{ result: string }>(
                    sandbox,
                    `/connect?host=${host}&port=${listener.port}`,
                  )
                ).result,
            ),
          );
          for (const r of results) expect(r).not.toBe("connected");
          expect(listener.connections()).toBe(0);
        } finally {
          await sandbox.destroy();
          await listener.close();
        }
      },
    );

    check(
      "fork",
      (b) => b.capabilities.fork,
      "forks a child sandbox from a zygote",
      async () => {
        const zygote = await backend.create(spec({ role: "zygote" }));
        try {
          const child = await zygote.fork(spec({ env: { N: "child" } }));
          try {
            expect(await getJson(child, "/env?name=N")).toEqual({ value: "child" });
          } finally {
            await child.destroy();
          }
        } finally {
          await zygote.destroy();
        }
      },
    );

    it(
      "never connects through a link the guest put in place of its socket",
      async () => {
        const decoy = await decoySocket();
        const sandbox = await backend.create(spec());
        try {
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
          await get(sandbox, `/relink?target=${encodeURIComponent(decoy.path)}`);
          // New connections from here on: each one must reach the guest's own socket or fail.
          const after = await Promise.allSettled(
            Array.from({ length: 12 }, () => get(sandbox, "/ping")),
          );
          for (const r of after) if (r.status === "fulfilled") expect(r.value.text).toBe("pong");
          expect(decoy.connections()).toBe(0);
        } finally {
          await sandbox.destroy();
          await decoy.close();
        }
      },
      timeout,
    );

    it(
      "refuses a guest whose socket is a link from the start, with OL_GUEST_SOCKET_UNSAFE",
      async () => {
        const decoy = await decoySocket();
        try {
          const attempt = backend.create(spec({ env: { OL_CONFORMANCE_LINK_SOCKET: decoy.path } }));
          await expect(attempt).rejects.toBeInstanceOf(GuestSocketUnsafeError);
          expect(decoy.connections()).toBe(0);
        } finally {
          await decoy.close();
        }
      },
      timeout,
    );

    check(
      "host-paths-hidden",
      () => true,
      "shows the guest no host path of its sandbox in any process's command line",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          const { lines } = await getJson<{ lines: string[] }>(sandbox, "/cmdlines");
          expect(lines.length).toBeGreaterThan(0);
          for (const line of lines) expect(line).not.toContain(codeDir);
          for (const line of lines)
            expect(line).not.toMatch(/--cgroup|--scratch|\/sys\/fs\/cgroup/);
        } finally {
          await sandbox.destroy();
        }
      },
    );

    /** CPU each sandbox used while every one of them burned a core for `ms`, µs; and wall µs. */
    const burn = async (sandboxes: readonly Sandbox[], ms: number) => {
      const used = async () =>
        Promise.all(sandboxes.map(async (s) => (await s.stats()).cpuUsageUs));
      const before = await used();
      const started = performance.now();
      await Promise.all(sandboxes.map((s) => get(s, `/burn?ms=${ms}`)));
      const wallUs = (performance.now() - started) * 1000;
      const after = await used();
      return { cpuUs: after.map((a, i) => a - (before[i] ?? 0)), wallUs };
    };
    const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

    check(
      "cpu-groups",
      (b) => b.capabilities.limits.cpuGroups === true,
      "gives two busy CPU groups like shares, whether a group runs two sandboxes or one",
      async () => {
        // Capped at one core each: ungrouped, two busy sandboxes get twice the CPU of one, on
        // any host; grouped, the two-sandbox group is held to what the other one uses.
        const group = (name: string) => ({ cpuGroup: { name, cpuPercent: 100 } });
        const two = await Promise.all([0, 1].map(() => backend.create(spec(group("conf-two")))));
        const one = await backend.create(spec(group("conf-one")));
        try {
          expect(one.spec.cpuGroup).toEqual({ name: "conf-one", cpuPercent: 100 });
          const { cpuUs } = await burn([...two, one], 2000);
          const twoUs = sum(cpuUs.slice(0, 2));
          const oneUs = cpuUs[2] ?? 0;
          expect(oneUs).toBeGreaterThan(0);
          expect(twoUs / oneUs, `two: ${twoUs} µs, one: ${oneUs} µs`).toBeLessThan(1.6);
          expect(oneUs / twoUs, `two: ${twoUs} µs, one: ${oneUs} µs`).toBeLessThan(1.6);
        } finally {
          await Promise.all([...two, one].map((s) => s.destroy()));
        }
      },
    );

    check(
      "cpu-groups",
      (b) => b.capabilities.limits.cpuGroups === true,
      "holds a CPU group to its cpuPercent across all its sandboxes",
      async () => {
        // Each sandbox may use a whole core; the group only half of one.
        const grouped = spec({ cpuGroup: { name: "conf-half", cpuPercent: 50 } });
        const sandboxes = await Promise.all([0, 1].map(() => backend.create(grouped)));
        try {
          const { cpuUs, wallUs } = await burn(sandboxes, 2000);
          expect(sum(cpuUs) / wallUs).toBeLessThan(0.65);
          expect(sum(cpuUs)).toBeGreaterThan(0);
        } finally {
          await Promise.all(sandboxes.map((s) => s.destroy()));
        }
      },
    );

    check(
      "cpu-group-join",
      (b) => b.capabilities.joinCpuGroup === true,
      "moves a running sandbox into a CPU group, which then holds it to the group's cpuPercent",
      async () => {
        const sandbox = await backend.create(spec());
        try {
          await sandbox.joinCpuGroup({ name: "conf-joined", cpuPercent: 30 });
          expect(sandbox.spec.cpuGroup).toEqual({ name: "conf-joined", cpuPercent: 30 });
          const { cpuUs, wallUs } = await burn([sandbox], 1500);
          expect(sum(cpuUs) / wallUs).toBeLessThan(0.42);
          expect(await get(sandbox, "/ping")).toEqual({ status: 200, text: "pong" });
        } finally {
          await sandbox.destroy();
        }
      },
    );

    check(
      "uid-per-sandbox",
      (b) => b.capabilities.uidPerSandbox === true,
      "runs each live sandbox as a uid of its own",
      async () => {
        const sandboxes = await Promise.all([1, 2, 3].map(() => backend.create(spec())));
        try {
          const uids = await Promise.all(
            sandboxes.map(async (s) => (await getJson<{ uid: number }>(s, "/whoami")).uid),
          );
          expect(new Set(uids).size).toBe(3);
          for (const uid of uids) expect(uid).toBeGreaterThan(0);
        } finally {
          await Promise.all(sandboxes.map((s) => s.destroy()));
        }
      },
    );

    it(
      "cleanup destroys every live sandbox",
      async () => {
        const a = await backend.create(spec());
        const b = await backend.create(spec());
        await backend.cleanup();
        expect([a.state, b.state]).toEqual(["dead", "dead"]);
        expect(
          events.filter(
            (e) => e.type === "destroyed" && (e.sandboxId === a.id || e.sandboxId === b.id),
          ),
        ).toHaveLength(2);
      },
      timeout,
    );
  });
}

/** A unix socket in a fresh temp dir that counts who connects: the target of a lying guest. */
async function decoySocket(): Promise<{
  path: string;
  connections: () => number;
  close: () => Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), "ol-conformance-decoy-"));
  const path = join(dir, "decoy.sock");
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    connections: () => connections,
    close: async () => {
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP listener on every host address that counts who connects: the worker's port, say. */
async function countingTcpListener(): Promise<{
  port: number;
  connections: () => number;
  close: () => Promise<void>;
}> {
  let connections = 0;
  const server = createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    port,
    connections: () => connections,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
