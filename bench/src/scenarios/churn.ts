import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Client } from "undici";
import { echoCodeDir, echoSpec, makeDocker, makeSock, poke } from "../lib/backends.js";
import { SCRATCH_ROOT } from "../lib/env.js";
import type { BenchOptions } from "../lib/options.js";
import { startBareGuest } from "../lib/peers.js";
import { progress, Report } from "../lib/report.js";
import { summarize } from "../lib/stats.js";
import { barChartSvg, cdfSvg } from "../lib/svg.js";

interface Series {
  key: string;
  label: string;
  /** create until the guest's first answer, ms */
  ready: number[];
  /** one full create + answer + destroy, ms */
  cycle: number[];
  perSecond: number;
}

/** Runs `cycle` until `cycles` are done or `seconds` have passed. */
async function loop(
  key: string,
  label: string,
  cycles: number,
  seconds: number,
  cycle: () => Promise<number>,
): Promise<Series> {
  const ready: number[] = [];
  const times: number[] = [];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  while (times.length < cycles && performance.now() < deadline) {
    const t0 = performance.now();
    ready.push(await cycle());
    times.push(performance.now() - t0);
  }
  const elapsed = (performance.now() - start) / 1000;
  progress(`${label}: ${times.length} cycles in ${elapsed.toFixed(1)} s`);
  return { key, label, ready, cycle: times, perSecond: times.length / elapsed };
}

/**
 * Churn: sandbox create, first answer, destroy, one after another, for SOCK, Docker and a bare
 * spawn of the same guest without isolation.
 */
export async function churn(o: BenchOptions): Promise<Report> {
  const report = new Report("churn");
  report.params = { cycles: o.churnCycles, seconds: o.churnSeconds };
  const code = await echoCodeDir();
  const spec = echoSpec(code);
  const series: Series[] = [];

  try {
    const sock = await makeSock("churn-sock");
    try {
      await (await sock.create(spec)).destroy(); // first create prepares cgroups: not counted
      series.push(
        await loop("sock", "SOCK", o.churnCycles, o.churnSeconds, async () => {
          const t0 = performance.now();
          const s = await sock.create(spec);
          if ((await poke(s)) !== 200) throw new Error("SOCK guest did not answer 200");
          const ms = performance.now() - t0;
          await s.destroy();
          return ms;
        }),
      );
    } finally {
      await sock.cleanup();
    }
  } catch (error) {
    report.note(`SOCK skipped: ${(error as Error).message.split("\n")[0]}`);
  }

  try {
    const d = await makeDocker("churn-docker");
    if (d.backend) {
      const docker = d.backend;
      report.data.dockerReadyMs = d.readyMs;
      try {
        await (await docker.create(spec)).destroy();
        series.push(
          await loop("docker", "Docker", o.churnCycles, o.churnSeconds, async () => {
            const t0 = performance.now();
            const s = await docker.create(spec);
            if ((await poke(s)) !== 200) throw new Error("Docker guest did not answer 200");
            const ms = performance.now() - t0;
            await s.destroy();
            return ms;
          }),
        );
      } finally {
        await docker.cleanup();
      }
    } else report.note(`Docker skipped: ${d.why}`);
  } catch (error) {
    report.note(`Docker failed, skipped: ${(error as Error).message.split("\n")[0]}`);
  }

  let n = 0;
  series.push(
    await loop(
      "spawn",
      "bare spawn (same guest, no isolation)",
      o.churnCycles,
      o.churnSeconds,
      async () => {
        const sock = join(SCRATCH_ROOT, `churn-bare-${n++}.sock`);
        const t0 = performance.now();
        const child = await startBareGuest(code, sock, "ours");
        const client = new Client("http://guest", { socketPath: sock });
        const res = await client.request({ path: "/", method: "POST", body: '{"x":1}' });
        await res.body.dump();
        const ms = performance.now() - t0;
        await client.close();
        await child.stop();
        return ms;
      },
    ),
  );

  report.header = ["backend", "cycles", "cycles/s", "ready p50 ms", "ready p99 ms", "cycle p50 ms"];
  const sum = new Map(
    series.map((s) => [s.key, { s, ready: summarize(s.ready), cycle: summarize(s.cycle) }]),
  );
  for (const { s, ready, cycle } of sum.values())
    report.rows.push([s.label, s.cycle.length, s.perSecond, ready.p50, ready.p99, cycle.p50]);
  const sock = sum.get("sock");
  for (const [k, name] of [
    ["spawn", "bare spawn"],
    ["docker", "ours (Docker)"],
  ] as const) {
    const peer = sum.get(k);
    if (!sock || !peer) continue;
    report.addRatio({
      what: "create+destroy /s",
      ours: sock.s.perSecond,
      peer: peer.s.perSecond,
      peerName: name,
      unit: "/s",
      better: "higher",
    });
    report.addRatio({
      what: "create→first answer p50",
      ours: sock.ready.p50,
      peer: peer.ready.p50,
      peerName: name,
      unit: "ms",
      better: "lower",
      ...(k === "docker" ? { goal: "≤ 0.05x (20x faster)" } : {}),
    });
    report.addRatio({
      what: "create→first answer p99",
      ours: sock.ready.p99,
      peer: peer.ready.p99,
      peerName: name,
      unit: "ms",
      better: "lower",
    });
  }
  report.data.series = series;
  report.chart(
    "churn-rate",
    barChartSvg({
      title: "Sandbox churn: create + first answer + destroy, one after another",
      subtitle: "whiskers: the rate implied by the p10..p90 cycle time",
      unit: "cycles per second (higher is better)",
      groups: [
        {
          label: "cycles per second",
          bars: series.map((s) => {
            const c = [...s.cycle].sort((a, b) => a - b);
            const at = (p: number) =>
              c[Math.min(c.length - 1, Math.floor(p * c.length))] ?? Number.NaN;
            return { label: s.label, value: s.perSecond, lo: 1000 / at(0.9), hi: 1000 / at(0.1) };
          }),
        },
      ],
    }),
  );
  report.chart(
    "churn-ready-cdf",
    cdfSvg({
      title: "Create until the guest answers its first request",
      unit: "ms",
      series: series.map((s) => ({ label: s.label, samples: s.ready })),
    }),
  );
  return report;
}
