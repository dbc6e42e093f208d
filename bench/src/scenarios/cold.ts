import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, request } from "undici";
import { NODE, SCRATCH_ROOT, SERVERS_DIR } from "../lib/env.js";
import type { BenchOptions } from "../lib/options.js";
import { dockerEngine } from "../lib/peers.js";
import { startChild } from "../lib/procs.js";
import { progress, Report } from "../lib/report.js";
import { summarize } from "../lib/stats.js";
import { cdfSvg } from "../lib/svg.js";
import {
  ECHO_SOURCE,
  HELLO_SOURCE,
  type OurWorker,
  startWorker,
  writeLambda,
} from "../lib/worker.js";
import { zygoteSupport } from "../lib/zygotes.js";

/** How far apart never-seen lambdas arrive in the paced series, ms. */
const PACE_MS = 200;

/** First-response latency (ms) of each never-seen lambda through a running worker. */
async function throughWorker(
  name: string,
  overrides: string[],
  n: number,
  gapMs: number,
  onWorker?: (w: OurWorker) => Promise<void>,
): Promise<number[]> {
  const names = Array.from({ length: n }, (_, i) => `hello-${i}`);
  const w = await startWorker({
    name,
    overrides,
    fill: async (r) => {
      await writeLambda(r, "echo", ECHO_SOURCE);
      for (const l of names) await writeLambda(r, l, HELLO_SOURCE);
    },
  });
  const out: number[] = [];
  try {
    // The worker itself is warm (one lambda served) before the first never-seen one.
    await (await request(`${w.url}/run/echo`, { method: "POST", body: "{}" })).body.dump();
    const deadline = Date.now() + 180_000;
    for (const l of names) {
      if (Date.now() > deadline) break;
      // New lambdas arrive this far apart (not timed): ready runtimes refill in between.
      if (gapMs > 0) await sleep(gapMs);
      const t0 = performance.now();
      const res = await request(`${w.url}/run/${l}`, {
        method: "POST",
        body: "{}",
        headersTimeout: 60_000,
      });
      const text = await res.body.text();
      const ms = performance.now() - t0;
      if (res.statusCode !== 200)
        throw new Error(`${l}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
      out.push(ms);
    }
    await onWorker?.(w);
  } finally {
    await w.stop();
  }
  return out;
}

/** A fresh `node` process per function: spawn until its first answer over a unix socket. */
async function freshNode(n: number): Promise<number[]> {
  const dir = join(SCRATCH_ROOT, "cold-node");
  await mkdir(dir, { recursive: true });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const handler = join(dir, `hello-${i}`);
    await mkdir(handler, { recursive: true });
    await writeFile(join(handler, "f.js"), HELLO_SOURCE);
    const sock = join(dir, `g${i}.sock`);
    const t0 = performance.now();
    const child = startChild(NODE, [join(SERVERS_DIR, "guest.mjs"), handler, sock]);
    try {
      await child.line(/^listening/, 15_000);
      const client = new Client("http://localhost", { socketPath: sock });
      const res = await client.request({ path: "/", method: "POST", body: "{}" });
      await res.body.text();
      out.push(performance.now() - t0);
      await client.close();
    } finally {
      await child.stop();
    }
  }
  return out;
}

/**
 * Cold start: never-seen hello lambdas through our worker (SOCK; zygotes on and off once the
 * build has them; Docker when an engine answers) beside a fresh `node` process per function.
 */
export async function cold(o: BenchOptions): Promise<Report> {
  const report = new Report("cold");
  report.params = { n: o.coldN };
  const series: { key: string; label: string; samples: number[] }[] = [];
  const zyg = await zygoteSupport();
  report.data.zygotes = zyg;
  if (zyg.available) {
    progress(`zygotes: ${zyg.how}`);
    progress(`ours (SOCK, zygotes on): ${o.coldN} never-seen lambdas, ${PACE_MS} ms apart`);
    series.push({
      key: "sock-zygotes",
      label: `ours SOCK, zygotes on (${PACE_MS} ms apart)`,
      samples: await throughWorker("cold-zyg", ["features.import_cache=tree"], o.coldN, PACE_MS),
    });
    progress(`ours (SOCK, zygotes on): ${o.coldN} never-seen lambdas back to back`);
    series.push({
      key: "sock-zygotes-burst",
      label: "ours SOCK, zygotes on (back to back)",
      samples: await throughWorker("cold-zyg-burst", ["features.import_cache=tree"], o.coldN, 0),
    });
    progress(`ours (SOCK, zygotes off): ${o.coldN} never-seen lambdas`);
    series.push({
      key: "sock",
      label: "ours SOCK, zygotes off",
      samples: await throughWorker("cold-sock", ["features.import_cache="], o.coldN, PACE_MS),
    });
  } else {
    report.note(
      `zygotes on/off: zygotes not available in this build (${zyg.how}); measured without`,
    );
    progress(`ours (SOCK): ${o.coldN} never-seen lambdas`);
    series.push({
      key: "sock",
      label: "ours SOCK",
      samples: await throughWorker("cold-sock", [], o.coldN, PACE_MS),
    });
  }
  progress(`fresh node process per function: ${o.coldN}`);
  series.push({ key: "node", label: "fresh node process", samples: await freshNode(o.coldN) });
  const docker = await dockerEngine();
  if (docker.version) {
    progress(`ours (Docker ${docker.version}): ${o.coldN} never-seen lambdas`);
    try {
      // Beside SOCK with zygotes off when the build has them: the backends' own create paths.
      const dockerOv = zyg.available
        ? ["sandbox=docker", "features.import_cache="]
        : ["sandbox=docker"];
      const label = zyg.available ? "ours Docker, zygotes off" : "ours Docker";
      series.push({
        key: "docker",
        label,
        samples: await throughWorker("cold-docker", dockerOv, o.coldN, PACE_MS),
      });
    } catch (error) {
      report.note(`ours (Docker) failed, skipped: ${(error as Error).message.split("\n")[0]}`);
    }
  } else report.note(`ours (Docker) skipped: ${docker.why}`);

  report.header = [
    "cold start of a never-seen lambda",
    "n",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "min ms",
    "max ms",
  ];
  const sum = new Map(series.map((s) => [s.key, summarize(s.samples)]));
  for (const s of series) {
    const x = sum.get(s.key);
    if (x) report.rows.push([s.label, x.n, x.p50, x.p90, x.p99, x.min, x.max]);
  }
  const sock = sum.get("sock-zygotes") ?? sum.get("sock");
  const oursLabel = sum.has("sock-zygotes") ? "cold p50 (zygotes on)" : "cold p50";
  if (sock) {
    const node = sum.get("node");
    if (node)
      report.addRatio({
        what: oursLabel,
        ours: sock.p50,
        peer: node.p50,
        peerName: "fresh node process",
        unit: "ms",
        better: "lower",
        goal: "ours ≤ 10 ms",
      });
    const dk = sum.get("docker");
    const off = sum.get("sock");
    if (dk && off) {
      report.addRatio({
        what: "cold p50 (SOCK vs Docker, same zygote setting)",
        ours: off.p50,
        peer: dk.p50,
        peerName: "ours (Docker)",
        unit: "ms",
        better: "lower",
        goal: "≤ 0.05x (20x faster)",
      });
      report.addRatio({
        what: "cold p99 (SOCK vs Docker)",
        ours: off.p99,
        peer: dk.p99,
        peerName: "ours (Docker)",
        unit: "ms",
        better: "lower",
      });
    }
    const zyg = sum.get("sock-zygotes");
    if (dk && zyg)
      report.addRatio({
        what: "cold p50 (SOCK zygotes on vs Docker)",
        ours: zyg.p50,
        peer: dk.p50,
        peerName: "ours (Docker)",
        unit: "ms",
        better: "lower",
        goal: "≤ 0.05x (20x faster)",
      });
    const burst = sum.get("sock-zygotes-burst");
    if (burst && off)
      report.addRatio({
        what: "cold p50, zygotes on, back to back",
        ours: burst.p50,
        peer: off.p50,
        peerName: "zygotes off",
        unit: "ms",
        better: "lower",
      });
    if (sum.has("sock-zygotes") && off)
      report.addRatio({
        what: "cold p50, zygotes on",
        ours: sock.p50,
        peer: off.p50,
        peerName: "zygotes off",
        unit: "ms",
        better: "lower",
      });
  }
  report.data.samplesMs = Object.fromEntries(series.map((s) => [s.key, s.samples]));
  report.chart(
    "cold-cdf",
    cdfSvg({
      title: "Cold start: first response of a never-seen lambda",
      subtitle: `${o.coldN} distinct hello lambdas per series, ${PACE_MS} ms apart unless back to back, worker already running`,
      unit: "first-response latency, ms",
      series: series.map((s) => ({ label: s.label, samples: s.samples })),
    }),
  );
  return report;
}
