import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Sandbox, SandboxBackend } from "@openlambda/sandbox-core";
import { Client, request } from "undici";
import { echoCodeDir, echoSpec, makeDocker, makeSock, poke } from "../lib/backends.js";
import { SCRATCH_ROOT } from "../lib/env.js";
import type { BenchOptions } from "../lib/options.js";
import { startBareGuest } from "../lib/peers.js";
import type { Child } from "../lib/procs.js";
import { progress, Report } from "../lib/report.js";
import { summarize } from "../lib/stats.js";
import { barChartSvg } from "../lib/svg.js";
import { HELLO_SOURCE, startWorker, writeLambda } from "../lib/worker.js";

const MiB = 2 ** 20;

/** Memory (MiB) of each of `k` sandboxes after one request and a pause. */
async function pausedMemory(backend: SandboxBackend, k: number, code: string): Promise<number[]> {
  const boxes: Sandbox[] = [];
  try {
    for (let i = 0; i < k; i++) {
      const s = await backend.create(echoSpec(code));
      boxes.push(s);
      await poke(s);
      await s.pause();
    }
    await new Promise((r) => setTimeout(r, 500));
    const out: number[] = [];
    for (const s of boxes) out.push((await s.stats()).memoryBytes / MiB);
    return out;
  } finally {
    await Promise.all(boxes.map((s) => s.destroy().catch(() => {})));
  }
}

/** Proportional set size (MiB) of each of `k` bare guest processes after one request. */
async function barePss(k: number, code: string): Promise<number[]> {
  const kids: Child[] = [];
  try {
    const out: number[] = [];
    for (let i = 0; i < k; i++) {
      const sock = join(SCRATCH_ROOT, `density-bare-${i}.sock`);
      const child = await startBareGuest(code, sock, "ours");
      kids.push(child);
      const client = new Client("http://guest", { socketPath: sock });
      await (await client.request({ path: "/", method: "POST", body: "{}" })).body.dump();
      await client.close();
    }
    for (const c of kids) {
      const text = await readFile(`/proc/${c.pid}/smaps_rollup`, "utf8");
      const kb = Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? Number.NaN);
      out.push(kb / 1024);
    }
    return out;
  } finally {
    await Promise.all(kids.map((c) => c.stop()));
  }
}

/**
 * Density: memory per paused sandbox (SOCK, Docker) beside a bare guest process, and how many
 * distinct lambdas one worker with a fixed mem_pool_mb serves without an error.
 */
export async function density(o: BenchOptions): Promise<Report> {
  const report = new Report("density");
  report.params = {
    sandboxes: o.densitySandboxes,
    poolMb: o.densityPoolMb,
    lambdas: o.densityLambdas,
  };
  const code = await echoCodeDir();
  const mem = new Map<string, { label: string; mib: number[] }>();
  try {
    const sock = await makeSock("density-sock");
    try {
      progress(`SOCK: ${o.densitySandboxes} paused sandboxes`);
      mem.set("sock", {
        label: "SOCK paused (cgroup memory)",
        mib: await pausedMemory(sock, o.densitySandboxes, code),
      });
    } finally {
      await sock.cleanup();
    }
  } catch (error) {
    report.note(`SOCK skipped: ${(error as Error).message.split("\n")[0]}`);
  }
  try {
    const d = await makeDocker("density-docker");
    if (d.backend) {
      try {
        progress(`Docker: ${o.densitySandboxes} paused containers`);
        mem.set("docker", {
          label: "Docker paused (engine stats)",
          mib: await pausedMemory(d.backend, o.densitySandboxes, code),
        });
      } finally {
        await d.backend.cleanup();
      }
    } else report.note(`Docker skipped: ${d.why}`);
  } catch (error) {
    report.note(`Docker failed, skipped: ${(error as Error).message.split("\n")[0]}`);
  }
  progress(`bare: ${o.densitySandboxes} guest processes`);
  mem.set("bare", {
    label: "bare guest process (PSS)",
    mib: await barePss(o.densitySandboxes, code),
  });

  // How many distinct lambdas a fixed pool serves: two passes over more lambdas than fit.
  const names = Array.from({ length: o.densityLambdas }, (_, i) => `d-${i}`);
  progress(
    `worker with mem_pool_mb=${o.densityPoolMb}: ${names.length} distinct lambdas, two passes`,
  );
  const w = await startWorker({
    name: "density-worker",
    overrides: [`mem_pool_mb=${o.densityPoolMb}`],
    fill: async (r) => {
      for (const n of names) await writeLambda(r, n, HELLO_SOURCE);
    },
  });
  let ok = 0;
  let errors = 0;
  const served = new Set<string>();
  const errorSamples: string[] = [];
  let stats: Record<string, number> = {};
  try {
    const deadline = Date.now() + 240_000;
    for (let pass = 0; pass < 2; pass++) {
      for (const n of names) {
        if (Date.now() > deadline) break;
        const res = await request(`${w.url}/run/${n}`, {
          method: "POST",
          body: "{}",
          headersTimeout: 60_000,
        });
        const text = await res.body.text();
        if (res.statusCode === 200) {
          ok++;
          served.add(n);
        } else {
          errors++;
          if (errorSamples.length < 3)
            errorSamples.push(`${n}: ${res.statusCode} ${text.slice(0, 200)}`);
        }
      }
    }
    stats = await w.stats();
  } finally {
    await w.stop();
  }
  const perSandboxMb = echoSpec(code).limits.memoryMb;

  report.header = ["what", "n", "p50", "min", "max", "unit"];
  for (const m of mem.values()) {
    const s = summarize(m.mib);
    report.rows.push([m.label, s.n, s.p50, s.min, s.max, "MiB"]);
  }
  report.rows.push([
    `distinct lambdas served, pool ${o.densityPoolMb} MiB`,
    names.length,
    served.size,
    "",
    "",
    "lambdas",
  ]);
  report.rows.push(["requests ok / errors (2 passes)", ok + errors, ok, "", errors, "requests"]);
  report.rows.push(["evictions", "", stats.evictions ?? "-", "", "", ""]);
  report.rows.push([
    `sandboxes the pool holds at ${perSandboxMb} MiB each`,
    "",
    Math.floor(o.densityPoolMb / perSandboxMb),
    "",
    "",
    "sandboxes",
  ]);
  if (errorSamples.length) report.note(`errors: ${errorSamples.join(" | ")}`);
  const sock = mem.get("sock");
  for (const [k, name] of [
    ["bare", "bare guest process"],
    ["docker", "ours (Docker)"],
  ] as const) {
    const peer = mem.get(k);
    if (sock && peer)
      report.addRatio({
        what: "memory per paused sandbox p50",
        ours: summarize(sock.mib).p50,
        peer: summarize(peer.mib).p50,
        peerName: name,
        unit: "MiB",
        better: "lower",
      });
  }
  report.addRatio({
    what: `lambdas served without error, ${o.densityPoolMb} MiB pool`,
    ours: served.size,
    peer: names.length,
    peerName: "lambdas asked",
    unit: "",
    better: "higher",
  });
  report.data = {
    memoryMiB: Object.fromEntries([...mem].map(([k, v]) => [k, v.mib])),
    stats,
    ok,
    errors,
  };
  report.chart(
    "density-memory",
    barChartSvg({
      title: "Memory per idle sandbox after one request",
      subtitle: `${o.densitySandboxes} each; whiskers: min..max`,
      unit: "MiB (lower is better)",
      groups: [
        {
          label: "memory",
          bars: [...mem.values()].map((m) => {
            const s = summarize(m.mib);
            return { label: m.label, value: s.p50, lo: s.min, hi: s.max };
          }),
        },
      ],
    }),
  );
  return report;
}
