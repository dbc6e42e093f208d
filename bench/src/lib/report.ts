import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RESULTS_DIR } from "./env.js";
import { type MachineInfo, machineInfo } from "./machine.js";
import { fmt, ratio } from "./stats.js";

export type Cell = string | number | undefined;

/** One headline ratio: ours / peer, with which way is better. */
export interface Ratio {
  readonly what: string;
  readonly ours: number;
  readonly peer: number;
  readonly peerName: string;
  readonly unit: string;
  /** `higher` when a bigger value of the metric is better (throughput), else `lower`. */
  readonly better: "higher" | "lower";
  readonly ratio: number;
  readonly goal?: string;
}

export function progress(message: string): void {
  process.stderr.write(`  .. ${message}\n`);
}

export function renderTable(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : (c ?? "-"))));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...text.map(line)].join("\n");
}

/** What one scenario found: its table, ratios, notes, raw data and charts. */
export class Report {
  readonly started = new Date();
  readonly machineAtStart: MachineInfo = machineInfo();
  readonly ratios: Ratio[] = [];
  readonly notes: string[] = [];
  readonly charts = new Map<string, string>();
  header: readonly string[] = [];
  rows: Cell[][] = [];
  data: Record<string, unknown> = {};
  params: Record<string, unknown> = {};

  constructor(readonly scenario: string) {}

  note(message: string): void {
    this.notes.push(message);
    process.stderr.write(`  !! ${message}\n`);
  }

  addRatio(r: Omit<Ratio, "ratio">): void {
    this.ratios.push({ ...r, ratio: ratio(r.ours, r.peer) });
  }

  chart(name: string, svg: string): void {
    this.charts.set(name, svg);
  }

  table(): string {
    return renderTable(this.header, this.rows);
  }

  async write(): Promise<string> {
    await mkdir(RESULTS_DIR, { recursive: true });
    const finished = new Date();
    const json = {
      scenario: this.scenario,
      date: this.started.toISOString(),
      durationS: Math.round((finished.getTime() - this.started.getTime()) / 100) / 10,
      machine: this.machineAtStart,
      machineAtEnd: machineInfo(),
      params: this.params,
      table: { header: this.header, rows: this.rows },
      ratios: this.ratios,
      notes: this.notes,
      charts: [...this.charts.keys()].map((k) => `${k}.svg`),
      data: this.data,
    };
    const path = join(RESULTS_DIR, `${this.scenario}.json`);
    await writeFile(path, `${JSON.stringify(json, null, 2)}\n`);
    for (const [name, svg] of this.charts) await writeFile(join(RESULTS_DIR, `${name}.svg`), svg);
    return path;
  }
}

export function ratioRows(ratios: readonly Ratio[]): Cell[][] {
  return ratios.map((r) => [
    r.what,
    `${fmt(r.ours)} ${r.unit}`,
    `${fmt(r.peer)} ${r.unit}`,
    r.peerName,
    Number.isFinite(r.ratio) ? `${fmt(r.ratio)}x` : "n/a",
    r.better === "higher" ? "higher is better" : "lower is better",
    r.goal ?? "",
  ]);
}

export const RATIO_HEADER = ["metric", "ours", "peer", "peer is", "ours/peer", "", "goal"];
