/**
 * Benchmark (not a test): fresh SOCK sandbox create until the guest answers its first request,
 * and create+destroy cycles per second, beside the same for a bare `spawn` of the same guest
 * without any isolation, in one run. The two are sampled alternately so that load from
 * elsewhere on the machine hits both alike. Needs root, cgroups and a built package.
 *
 *   pnpm --filter @openlambda/sandbox-sock bench        (BENCH_N=200 for more samples)
 *
 * BENCH_CPU_GROUP=1 makes every sandbox in one CPU group, as the lambda layer does.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guestClient, type SandboxSpec, waitForGuestSocket } from "@openlambda/sandbox-core";
import { type Dispatcher, request } from "undici";
import { buildBaseRootfs, forceCleanup, sockBackend } from "../dist/index.js";

const N = Number(process.env.BENCH_N ?? 100);
const GROUPED = process.env.BENCH_CPU_GROUP === "1";
const inGroup = (spec: SandboxSpec): SandboxSpec =>
  GROUPED ? { ...spec, cpuGroup: { name: "bench", cpuPercent: 100 } } : spec;
const GUEST = `
import { createServer } from "node:http";
import { rmSync } from "node:fs";
const path = process.env.OL_GUEST_SOCKET ?? "/host/ol.sock";
try { rmSync(path, { force: true }); } catch {}
createServer((req, res) => res.end("pong")).listen(path);
`;

interface Subject {
  /** Starts one, sends one request; ms from start to the answer, and how to stop it. */
  readonly firstAnswer: () => Promise<{ ms: number; stop: () => Promise<void> }>;
  /** Starts one (until it listens) and stops it, back to back. */
  readonly cycle: () => Promise<void>;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? Number.NaN;
  return { median: at(0.5), p99: at(0.99) };
};

async function ping(dispatcher: Dispatcher) {
  const res = await request("http://guest/ping", { dispatcher });
  const text = await res.body.text();
  if (text !== "pong") throw new Error(`unexpected answer ${text}`);
}

function sockSubject(backend: ReturnType<typeof sockBackend>, codeDir: string): Subject {
  const spec: SandboxSpec = {
    codeDir,
    runtime: "node",
    command: ["node", "/handler/guest.mjs"],
    // A disk limit like every lambda's (the worker's default disk_mb): a tmpfs per create.
    limits: { memoryMb: 128, cpuPercent: 100, procs: 32, timeoutMs: 10_000, diskMb: 32 },
  };
  return {
    async firstAnswer() {
      const t0 = performance.now();
      const sandbox = await backend.create(inGroup(spec));
      await ping(sandbox.dispatcher);
      return { ms: performance.now() - t0, stop: () => sandbox.destroy() };
    },
    async cycle() {
      await (await backend.create(inGroup(spec))).destroy();
    },
  };
}

function bareSubject(guestPath: string, dir: string): Subject {
  let n = 0;
  const start = async () => {
    const name = `g${n++}.sock`;
    const child = spawn(process.execPath, [guestPath], {
      env: { ...process.env, OL_GUEST_SOCKET: join(dir, name) },
      stdio: "ignore",
    });
    // The same readiness wait as the backend's, so that only isolation differs.
    const ready = await waitForGuestSocket(dir, { timeoutMs: 10_000, name });
    if (!ready.socket) throw new Error(ready.reason);
    return { child, socket: ready.socket };
  };
  const stop = async (child: ChildProcess) => {
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await gone;
  };
  return {
    async firstAnswer() {
      const t0 = performance.now();
      const { child, socket } = await start();
      const client = guestClient(socket);
      await ping(client);
      const ms = performance.now() - t0;
      return {
        ms,
        stop: async () => {
          await client.destroy();
          await stop(child);
        },
      };
    },
    async cycle() {
      await stop((await start()).child);
    },
  };
}

async function measure(subjects: readonly Subject[]) {
  // Warm up: the cgroup pool fills, the page cache holds node.
  for (const s of subjects) for (let i = 0; i < 5; i++) await (await s.firstAnswer()).stop();
  const first = subjects.map(() => [] as number[]);
  const cycleMs = subjects.map(() => 0);
  for (let i = 0; i < N; i++) {
    for (const [k, s] of subjects.entries()) {
      const { ms, stop } = await s.firstAnswer();
      first[k]?.push(ms);
      await stop();
    }
  }
  for (let i = 0; i < N; i++) {
    for (const [k, s] of subjects.entries()) {
      const t0 = performance.now();
      await s.cycle();
      cycleMs[k] = (cycleMs[k] ?? 0) + performance.now() - t0;
    }
  }
  return subjects.map((_, k) => ({
    ...stats(first[k] ?? []),
    cyclesPerSec: N / ((cycleMs[k] ?? 1) / 1000),
  }));
}

/** The helper's fork+exec alone: what a long-lived root helper would save per create. */
function helperExec(helper: string) {
  const xs: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    spawnSync(helper, ["version"]);
    xs.push(performance.now() - t0);
  }
  return stats(xs);
}

const root = await mkdtemp(join(tmpdir(), "ol-sock-bench-"));
const workDir = join(root, "work");
try {
  const { dir: base } = await buildBaseRootfs({ dir: join(tmpdir(), "ol-sock-test-base") });
  const codeDir = join(root, "code");
  await mkdir(codeDir);
  await writeFile(join(codeDir, "guest.mjs"), GUEST);
  const backend = sockBackend({ workDir, baseDir: base, cgroupPoolSize: 8 });
  const [sock, bare] = await measure([
    sockSubject(backend, codeDir),
    bareSubject(join(codeDir, "guest.mjs"), root),
  ]);
  await backend.cleanup();
  if (!sock || !bare) throw new Error("no figures");
  const helper = helperExec(new URL("../dist/ol-sock-helper", import.meta.url).pathname);
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const f = (x: number) => x.toFixed(1).padStart(9);
  const lines = [
    "",
    `SOCK create benchmark: ${N} samples each${GROUPED ? ", in a CPU group" : ""}, node ${process.version}, load average ${load}`,
    "",
    "                                median ms    p99 ms  cycles/s",
    `sock: create -> first answer ${f(sock.median)} ${f(sock.p99)} ${f(sock.cyclesPerSec)}`,
    `bare spawn -> first answer   ${f(bare.median)} ${f(bare.p99)} ${f(bare.cyclesPerSec)}`,
    `isolation overhead (median)  ${f(sock.median - bare.median)}`,
    `helper fork+exec alone       ${f(helper.median)} ${f(helper.p99)}`,
    "",
    "cycles/s: sock create + destroy; bare spawn, wait for its socket, SIGKILL, wait for exit",
  ];
  console.log(lines.join("\n"));
} finally {
  await forceCleanup(workDir);
  await rm(root, { recursive: true, force: true });
}
