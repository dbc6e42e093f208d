// Hand-written SVG charts: horizontal bars with error ranges, and latency CDFs. No dependencies;
// the output opens in any browser and renders on GitHub.

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#65a30d"];
const FONT = 'font-family="system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"';

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function num(x: number): string {
  const a = Math.abs(x);
  if (a >= 1000) return `${(x / 1000).toFixed(a >= 10_000 ? 0 : 1)}k`;
  if (a >= 10) return x.toFixed(0);
  if (a >= 1) return x.toFixed(1);
  return x.toFixed(2);
}

/** Round axis steps: 1, 2, 5 x 10^k. */
function niceMax(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? raw;
  return { top: Math.ceil(max / step) * step, step };
}

export interface Bar {
  readonly label: string;
  readonly value: number;
  /** Error range drawn as a whisker (e.g. min..max of rounds, or p50..p99). */
  readonly lo?: number;
  readonly hi?: number;
  /** Text after the bar; defaults to the value. */
  readonly note?: string;
}

export interface BarGroup {
  readonly label: string;
  readonly bars: readonly Bar[];
}

export interface BarChart {
  readonly title: string;
  readonly subtitle?: string;
  /** Axis label, e.g. "requests/s (higher is better)". */
  readonly unit: string;
  readonly groups: readonly BarGroup[];
}

/** Horizontal grouped bars; one color per bar label, whiskers for lo..hi. */
export function barChartSvg(chart: BarChart): string {
  const labels = [...new Set(chart.groups.flatMap((g) => g.bars.map((b) => b.label)))];
  const color = (l: string) => COLORS[labels.indexOf(l) % COLORS.length] as string;
  const barH = 18;
  const gap = 6;
  const left = 190;
  const plotW = 520;
  const right = 150;
  const top = chart.subtitle ? 62 : 48;
  const max = Math.max(
    ...chart.groups.flatMap((g) =>
      g.bars.map((b) => Math.max(b.value, b.hi ?? 0)).filter((v) => Number.isFinite(v)),
    ),
    0,
  );
  const { top: axisTop, step } = niceMax(max);
  const x = (v: number) => left + (Math.max(0, v) / axisTop) * plotW;
  const out: string[] = [];
  let y = top;
  for (const g of chart.groups) {
    out.push(`<text x="10" y="${y + 13}" font-size="13" font-weight="600">${esc(g.label)}</text>`);
    y += 20;
    for (const b of g.bars) {
      const ok = Number.isFinite(b.value);
      out.push(
        `<text x="${left - 8}" y="${y + 13}" font-size="12" text-anchor="end">${esc(b.label)}</text>`,
      );
      if (ok) {
        out.push(
          `<rect x="${left}" y="${y}" width="${(x(b.value) - left).toFixed(1)}" height="${barH}" fill="${color(b.label)}" opacity="0.85"><title>${esc(b.label)}: ${esc(b.note ?? num(b.value))}</title></rect>`,
        );
        if (
          b.lo !== undefined &&
          b.hi !== undefined &&
          Number.isFinite(b.lo) &&
          Number.isFinite(b.hi)
        ) {
          const cy = y + barH / 2;
          out.push(
            `<path d="M${x(b.lo).toFixed(1)} ${cy}H${x(b.hi).toFixed(1)}M${x(b.lo).toFixed(1)} ${cy - 5}v10M${x(b.hi).toFixed(1)} ${cy - 5}v10" stroke="#111" stroke-width="1.3" fill="none"/>`,
          );
        }
      }
      const tx = ok ? Math.max(x(b.value), x(b.hi ?? 0)) + 6 : left + 6;
      out.push(
        `<text x="${tx.toFixed(1)}" y="${y + 13}" font-size="12" fill="#333">${esc(ok ? (b.note ?? num(b.value)) : (b.note ?? "n/a"))}</text>`,
      );
      y += barH + gap;
    }
    y += 10;
  }
  const height = y + 40;
  const grid: string[] = [];
  for (let v = 0; v <= axisTop + step / 2; v += step) {
    grid.push(
      `<line x1="${x(v).toFixed(1)}" y1="${top - 4}" x2="${x(v).toFixed(1)}" y2="${y - 6}" stroke="#e5e7eb"/>`,
      `<text x="${x(v).toFixed(1)}" y="${y + 8}" font-size="11" text-anchor="middle" fill="#555">${num(v)}</text>`,
    );
  }
  const width = left + plotW + right;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="22" font-size="16" font-weight="700">${esc(chart.title)}</text>`,
    chart.subtitle
      ? `<text x="10" y="42" font-size="12" fill="#555">${esc(chart.subtitle)}</text>`
      : "",
    ...grid,
    ...out,
    `<text x="${left + plotW / 2}" y="${y + 28}" font-size="12" text-anchor="middle" fill="#333">${esc(chart.unit)}</text>`,
    "</svg>",
    "",
  ].join("\n");
}

export interface CdfSeries {
  readonly label: string;
  readonly samples: readonly number[];
}

export interface CdfChart {
  readonly title: string;
  readonly subtitle?: string;
  readonly unit: string;
  readonly series: readonly CdfSeries[];
}

/** Empirical CDFs on a log-scaled x axis (latencies span decades: ms for SOCK, s for Docker). */
export function cdfSvg(chart: CdfChart): string {
  const series = chart.series.filter((s) => s.samples.length > 0);
  const all = series.flatMap((s) => s.samples).filter((v) => v > 0);
  const lo = all.length ? 10 ** Math.floor(Math.log10(Math.min(...all))) : 1;
  const hi = all.length ? 10 ** Math.ceil(Math.log10(Math.max(...all))) : 10;
  const left = 60;
  const top = chart.subtitle ? 62 : 48;
  const plotW = 620;
  const plotH = 300;
  const legendW = 230;
  const x = (v: number) =>
    left +
    ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;
  const y = (p: number) => top + plotH - p * plotH;
  const out: string[] = [];
  for (let d = lo; d <= hi * 1.001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi * 1.001) break;
      out.push(
        `<line x1="${x(v).toFixed(1)}" y1="${top}" x2="${x(v).toFixed(1)}" y2="${top + plotH}" stroke="${m === 1 ? "#d1d5db" : "#f0f1f3"}"/>`,
        `<text x="${x(v).toFixed(1)}" y="${top + plotH + 16}" font-size="11" text-anchor="middle" fill="#555">${num(v)}</text>`,
      );
    }
  }
  for (const p of [0, 0.25, 0.5, 0.75, 0.9, 0.99, 1]) {
    out.push(
      `<line x1="${left}" y1="${y(p).toFixed(1)}" x2="${left + plotW}" y2="${y(p).toFixed(1)}" stroke="${p === 0.5 ? "#d1d5db" : "#f0f1f3"}"/>`,
      `<text x="${left - 6}" y="${(y(p) + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#555">${Math.round(p * 100)}%</text>`,
    );
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length] as string;
    const sorted = [...s.samples].sort((a, b) => a - b);
    const n = sorted.length;
    let d = `M${x(sorted[0] as number).toFixed(1)} ${y(0).toFixed(1)}`;
    sorted.forEach((v, k) => {
      d += `H${x(v).toFixed(1)}V${y((k + 1) / n).toFixed(1)}`;
    });
    out.push(`<path d="${d}" stroke="${c}" stroke-width="2" fill="none"/>`);
    const med = sorted[Math.ceil(n / 2) - 1] as number;
    const ly = top + 10 + i * 20;
    out.push(
      `<line x1="${left + plotW + 16}" y1="${ly}" x2="${left + plotW + 36}" y2="${ly}" stroke="${c}" stroke-width="3"/>`,
      `<text x="${left + plotW + 42}" y="${ly + 4}" font-size="12">${esc(s.label)} (p50 ${num(med)})</text>`,
    );
  });
  const width = left + plotW + legendW;
  const height = top + plotH + 50;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="22" font-size="16" font-weight="700">${esc(chart.title)}</text>`,
    chart.subtitle
      ? `<text x="10" y="42" font-size="12" fill="#555">${esc(chart.subtitle)}</text>`
      : "",
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#9ca3af"/>`,
    ...out,
    `<text x="${left + plotW / 2}" y="${top + plotH + 36}" font-size="12" text-anchor="middle" fill="#333">${esc(chart.unit)} (log scale)</text>`,
    series.length === 0
      ? `<text x="${left + plotW / 2}" y="${top + plotH / 2}" font-size="14" text-anchor="middle">no data</text>`
      : "",
    "</svg>",
    "",
  ].join("\n");
}
