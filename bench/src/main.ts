// `pnpm bench [scenario ...] [--quick] [--profile] [--client-threads N]`
// Runs the scenarios in order, prints a table for each and the headline ratios at the end, and
// writes JSON and SVG under bench/results/ (and the results section of bench/README.md after a
// full run of every scenario).
import { rm } from "node:fs/promises";
import { SCRATCH_ROOT } from "./lib/env.js";
import { busyNote, machineInfo } from "./lib/machine.js";
import { type BenchOptions, FULL, QUICK } from "./lib/options.js";
import { killAllChildren } from "./lib/procs.js";
import { RATIO_HEADER, type Ratio, type Report, ratioRows, renderTable } from "./lib/report.js";
import { updateReadme, writeSummary } from "./lib/summary.js";
import { churn } from "./scenarios/churn.js";
import { cold } from "./scenarios/cold.js";
import { density } from "./scenarios/density.js";
import { packages } from "./scenarios/packages.js";
import { python } from "./scenarios/python.js";
import { warm } from "./scenarios/warm.js";

const SCENARIOS: Record<string, (o: BenchOptions) => Promise<Report>> = {
  warm,
  cold,
  churn,
  density,
  packages,
  python,
};

function parseArgs(argv: readonly string[]) {
  const names: string[] = [];
  let options: BenchOptions = FULL;
  let quick = false;
  const patch: Partial<Record<keyof BenchOptions, unknown>> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--") continue;
    if (a === "--quick") quick = true;
    else if (a === "--profile") patch.profile = true;
    else if (a === "--client-threads") patch.clientThreads = Number(argv[++i]);
    else if (a === "--cold-n") patch.coldN = Number(argv[++i]);
    else if (a === "--duration") patch.durationS = Number(argv[++i]);
    else if (a === "--rounds") patch.rounds = Number(argv[++i]);
    else if (a === "-h" || a === "--help") {
      process.stdout.write(
        `usage: pnpm bench [${Object.keys(SCENARIOS).join("|")} ...] [--quick] [--profile] [--client-threads N] [--cold-n N] [--duration S] [--rounds N]\n`,
      );
      process.exit(0);
    } else if (a in SCENARIOS) names.push(a);
    else {
      process.stderr.write(`unknown scenario or flag: ${a} (try --help)\n`);
      process.exit(2);
    }
  }
  if (quick) options = QUICK;
  options = { ...options, ...(patch as Partial<BenchOptions>) };
  return { names: names.length ? names : Object.keys(SCENARIOS), options, quick };
}

async function main(): Promise<void> {
  const { names, options, quick } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const m0 = machineInfo();
  process.stdout.write(
    `openlambda bench: ${names.join(", ")}${quick ? " (quick)" : ""}\n` +
      `machine: ${m0.cores} cores (${m0.cpuModel}), ${m0.memoryMb} MiB, kernel ${m0.kernel}, node ${m0.node}, cgroup ${m0.cgroup}, load ${m0.loadAvg.join(" ")}\n`,
  );
  const reports: Report[] = [];
  const failed: string[] = [];
  for (const name of names) {
    const run = SCENARIOS[name];
    if (!run) continue;
    process.stdout.write(`\n== ${name} ==\n`);
    const t0 = Date.now();
    try {
      const report = await run(options);
      const path = await report.write();
      process.stdout.write(`${report.table()}\n`);
      if (report.ratios.length)
        process.stdout.write(`\n${renderTable(RATIO_HEADER, ratioRows(report.ratios))}\n`);
      for (const n of report.notes) process.stdout.write(`note: ${n}\n`);
      process.stdout.write(
        `(${((Date.now() - t0) / 1000).toFixed(1)} s; ${path}, charts: ${[...report.charts.keys()].map((k) => `${k}.svg`).join(", ") || "none"})\n`,
      );
      reports.push(report);
    } catch (error) {
      failed.push(name);
      process.stdout.write(`scenario ${name} failed: ${(error as Error).stack ?? String(error)}\n`);
    }
  }
  const ratios: Ratio[] = reports.flatMap((r) =>
    r.ratios.map((x) => ({ ...x, what: `${r.scenario}: ${x.what}` })),
  );
  const m1 = machineInfo();
  const wallS = (Date.now() - started) / 1000;
  process.stdout.write(`\n== headline: ours / peer, pair by pair in this run ==\n`);
  process.stdout.write(`${renderTable(RATIO_HEADER, ratioRows(ratios))}\n`);
  const busy = busyNote(m0, m1);
  if (busy) process.stdout.write(`note: ${busy}\n`);
  process.stdout.write(
    `wall time ${wallS.toFixed(0)} s${failed.length ? `; failed: ${failed.join(", ")}` : ""}\n`,
  );
  const all = names.length === Object.keys(SCENARIOS).length;
  const summary = await writeSummary({ reports, ratios, wallS, quick, names, all, busy, failed });
  if (!quick && all) {
    await updateReadme(summary);
    process.stdout.write("bench/README.md results section updated\n");
  }
  await rm(SCRATCH_ROOT, { recursive: true, force: true }).catch(() => {});
  if (failed.length) process.exitCode = 1;
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    killAllChildren();
    process.exit(130);
  });
}

main().catch((error: unknown) => {
  killAllChildren();
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
