import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SCRATCH_ROOT } from "../lib/env.js";
import { type LoadResult, probeLatency, runLoad } from "../lib/load.js";
import type { BenchOptions } from "../lib/options.js";
import {
  dockerEngine,
  type Running,
  startCeiling,
  startFloor,
  startWorkerd,
  workerdBinary,
} from "../lib/peers.js";
import { progress, Report } from "../lib/report.js";
import { median, summarize } from "../lib/stats.js";
import { barChartSvg, cdfSvg } from "../lib/svg.js";
import { ECHO_SOURCE, startWorker, writeLambda } from "../lib/worker.js";

const BODY = JSON.stringify({ hello: "world", n: 42, list: [1, 2, 3] });

interface Peer {
  readonly key: string;
  readonly label: string;
  readonly start: () => Promise<Running>;
}

/**
 * Warm invocations of `echo` at 1 and 32 connections: our worker (SOCK, and Docker when an
 * engine answers) beside the in-process ceiling, the proxy floor, and workerd. Rounds are
 * interleaved peer by peer so that a noisy neighbour hits every peer alike.
 */
export async function warm(o: BenchOptions): Promise<Report> {
  const report = new Report("warm");
  report.params = { ...o, body: BODY };
  const handlerDir = join(SCRATCH_ROOT, "echo-handler");
  await mkdir(handlerDir, { recursive: true });
  await writeFile(join(handlerDir, "f.js"), ECHO_SOURCE);

  const ourWorker = (name: string, overrides: string[]) => async (): Promise<Running> => {
    const w = await startWorker({
      name,
      overrides,
      fill: async (r) => void (await writeLambda(r, "echo", ECHO_SOURCE)),
      nodeFlags:
        o.profile && name === "warm-sock"
          ? ["--cpu-prof", `--cpu-prof-dir=${join(SCRATCH_ROOT, "profiles")}`]
          : [],
    });
    return { url: `${w.url}/run/echo`, stop: () => w.stop() };
  };
  const peers: Peer[] = [
    { key: "ours-sock", label: "ours (SOCK)", start: ourWorker("warm-sock", []) },
  ];
  const docker = await dockerEngine();
  if (docker.version) {
    peers.push({
      key: "ours-docker",
      label: "ours (Docker)",
      start: ourWorker("warm-docker", ["sandbox=docker"]),
    });
  } else report.note(`ours (Docker) skipped: ${docker.why}`);
  peers.push(
    { key: "ceiling", label: "in-process node:http", start: () => startCeiling(handlerDir) },
    {
      key: "floor",
      label: "proxy→unix→minimal guest",
      start: () => startFloor(handlerDir, "minimal"),
    },
    {
      key: "floor-ours-guest",
      label: "proxy→unix→our guest",
      start: () => startFloor(handlerDir, "ours"),
    },
  );
  const wd = workerdBinary();
  if (wd.path)
    peers.push({ key: "workerd", label: "workerd", start: () => startWorkerd(ECHO_SOURCE) });
  else report.note(`workerd skipped: ${wd.why}`);

  const running = new Map<string, Running>();
  const results = new Map<string, LoadResult[]>();
  const latencies = new Map<string, number[]>();
  const probeMs = Math.min(1.5, o.durationS) * 1000;
  try {
    for (const p of peers) {
      progress(`starting ${p.label}`);
      try {
        running.set(p.key, await p.start());
      } catch (error) {
        report.note(
          `${p.label} could not start, skipped: ${(error as Error).message.split("\n")[0]}`,
        );
      }
    }
    for (let round = 1; round <= o.rounds; round++) {
      for (const c of o.connections) {
        for (const p of peers) {
          const r = running.get(p.key);
          if (!r) continue;
          await runLoad({
            url: r.url,
            connections: c,
            durationS: o.warmupS,
            body: BODY,
            threads: o.clientThreads,
          });
          const res = await runLoad({
            url: r.url,
            connections: c,
            durationS: o.durationS,
            body: BODY,
            threads: o.clientThreads,
          });
          const probe = await probeLatency({
            url: r.url,
            connections: c,
            durationMs: probeMs,
            body: BODY,
          });
          const key = `${p.key}@${c}`;
          results.set(key, [...(results.get(key) ?? []), res]);
          const lat = latencies.get(key) ?? [];
          for (const v of probe.samples) lat.push(v);
          latencies.set(key, lat);
          const ps = summarize([...probe.samples]);
          progress(
            `round ${round}/${o.rounds} ${p.label} c=${c}: ${res.rps.toFixed(0)} req/s, p50 ${ps.p50.toFixed(3)} ms, p99 ${ps.p99.toFixed(3)} ms` +
              (res.errors + res.non2xx + probe.errors
                ? `, ${res.errors + probe.errors} errors, ${res.non2xx} non-2xx`
                : ""),
          );
        }
      }
    }
  } finally {
    for (const [key, r] of running) {
      await r.stop().catch((e: unknown) => report.note(`stopping ${key}: ${String(e)}`));
    }
  }

  // Per (peer, connections): the median round, with min..max of rounds as the error range.
  const agg = (key: string) => {
    const runs = results.get(key);
    if (!runs?.length) return undefined;
    const lat = summarize(latencies.get(key) ?? []);
    return {
      rps: median(runs.map((r) => r.rps)),
      rpsMin: Math.min(...runs.map((r) => r.rps)),
      rpsMax: Math.max(...runs.map((r) => r.rps)),
      p50: lat.p50,
      p99: lat.p99,
      latency: lat,
      errors: runs.reduce((a, r) => a + r.errors + r.timeouts + r.non2xx, 0),
      requests: runs.reduce((a, r) => a + r.total, 0),
    };
  };
  report.header = [
    "server",
    "conns",
    "req/s",
    "min..max",
    "p50 ms",
    "p99 ms",
    "errors",
    "requests",
  ];
  for (const c of o.connections) {
    for (const p of peers) {
      const a = agg(`${p.key}@${c}`);
      if (!a) {
        report.rows.push([p.label, c, "absent"]);
        continue;
      }
      report.rows.push([
        p.label,
        c,
        a.rps,
        `${a.rpsMin.toFixed(0)}..${a.rpsMax.toFixed(0)}`,
        a.p50,
        a.p99,
        a.errors,
        a.requests,
      ]);
    }
  }
  const ours = (c: number) => agg(`ours-sock@${c}`);
  const peer = (k: string, c: number) => agg(`${k}@${c}`);
  const cMax = Math.max(...o.connections);
  const cMin = Math.min(...o.connections);
  const pairs: [string, string, string?][] = [
    ["ceiling", "in-process node:http", "ours ≥ 0.5x"],
    ["workerd", "workerd", "ours > 1x"],
    ["floor", "proxy floor"],
    ["floor-ours-guest", "proxy→our guest"],
    ["ours-docker", "ours (Docker)"],
  ];
  for (const [k, name, goal] of pairs) {
    const a = ours(cMax);
    const b = peer(k, cMax);
    if (a && b)
      report.addRatio({
        what: `warm req/s @${cMax} conns`,
        ours: a.rps,
        peer: b.rps,
        peerName: name,
        unit: "req/s",
        better: "higher",
        ...(goal ? { goal } : {}),
      });
  }
  for (const [k, name] of [
    ["ceiling", "in-process node:http"],
    ["floor", "proxy floor"],
    ["workerd", "workerd"],
  ] as const) {
    const a = ours(cMin);
    const b = peer(k, cMin);
    if (a && b) {
      report.addRatio({
        what: `warm req/s @${cMin} conn`,
        ours: a.rps,
        peer: b.rps,
        peerName: name,
        unit: "req/s",
        better: "higher",
      });
      report.addRatio({
        what: `warm p50 @${cMin} conn`,
        ours: a.p50,
        peer: b.p50,
        peerName: name,
        unit: "ms",
        better: "lower",
      });
    }
  }
  const a = ours(cMax);
  const f = peer("floor", cMax);
  if (a && f)
    report.addRatio({
      what: `warm p99 @${cMax} conns`,
      ours: a.p99,
      peer: f.p99,
      peerName: "proxy floor",
      unit: "ms",
      better: "lower",
    });

  report.data = {
    autocannon: Object.fromEntries(results),
    latencyMs: Object.fromEntries(
      [...latencies.keys()].map((k) => [k, summarize(latencies.get(k) ?? [])]),
    ),
  };
  for (const c of o.connections) {
    report.chart(
      `warm-latency-cdf-${c}`,
      cdfSvg({
        title: `Warm echo latency CDF, ${c} connection${c > 1 ? "s" : ""}`,
        subtitle: `every request of the ${o.rounds} probe run(s) of ${probeMs / 1000}s each`,
        unit: "latency, ms",
        series: peers.flatMap((p) => {
          const l = latencies.get(`${p.key}@${c}`);
          return l?.length ? [{ label: p.label, samples: thin(l, 4000) }] : [];
        }),
      }),
    );
  }
  report.chart(
    "warm-throughput",
    barChartSvg({
      title: "Warm echo throughput",
      subtitle: `median of ${o.rounds} interleaved ${o.durationS}s rounds; whiskers: min..max round`,
      unit: "requests per second (higher is better)",
      groups: o.connections.map((c) => ({
        label: `${c} connection${c > 1 ? "s" : ""}`,
        bars: peers.flatMap((p) => {
          const g = agg(`${p.key}@${c}`);
          return g ? [{ label: p.label, value: g.rps, lo: g.rpsMin, hi: g.rpsMax }] : [];
        }),
      })),
    }),
  );
  report.chart(
    "warm-latency",
    barChartSvg({
      title: "Warm echo latency",
      subtitle: "bar: p50; whisker: p50..p99 (all probe requests)",
      unit: "milliseconds (lower is better)",
      groups: o.connections.map((c) => ({
        label: `${c} connection${c > 1 ? "s" : ""}`,
        bars: peers.flatMap((p) => {
          const g = agg(`${p.key}@${c}`);
          return g
            ? [
                {
                  label: p.label,
                  value: g.p50,
                  lo: g.p50,
                  hi: g.p99,
                  note: `p50 ${g.p50} / p99 ${g.p99} ms`,
                },
              ]
            : [];
        }),
      })),
    }),
  );
  return report;
}

/** At most `max` evenly spaced order statistics of a sample (keeps a CDF's shape, small SVG). */
function thin(samples: readonly number[], max: number): number[] {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length <= max) return s;
  return Array.from(
    { length: max },
    (_, i) => s[Math.floor((i * (s.length - 1)) / (max - 1))] as number,
  );
}
