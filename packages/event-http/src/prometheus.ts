import type { Metric } from "@openlambda/lambda-runtime";

/** Content type of the Prometheus text exposition format the `/metrics` route answers with. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes `# HELP` text: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A sample value as the format spells it (`NaN`, `+Inf`, `-Inf`). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

export function formatLabels(labels: Readonly<Record<string, string>> | undefined): string {
  if (labels === undefined) return "";
  let out = "";
  for (const key in labels) {
    const value = labels[key];
    if (value === undefined || !LABEL_RE.test(key)) continue;
    out += `${out === "" ? "" : ","}${key}="${escapeLabelValue(value)}"`;
  }
  return out === "" ? "" : `{${out}}`;
}

/**
 * Renders metrics in the Prometheus text exposition format 0.0.4: one `# HELP` and one `# TYPE`
 * line per metric, then its samples. Metrics with an invalid name are skipped; a name that
 * appears twice is rendered once (the first wins), as the format requires.
 */
export function renderPrometheus(metrics: readonly Metric[]): string {
  let out = "";
  const seen = new Set<string>();
  for (const metric of metrics) {
    if (!NAME_RE.test(metric.name) || seen.has(metric.name)) continue;
    seen.add(metric.name);
    out += `# HELP ${metric.name} ${escapeHelp(metric.help)}\n# TYPE ${metric.name} ${metric.type}\n`;
    for (const sample of metric.samples) {
      out += `${metric.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}\n`;
    }
  }
  return out;
}

/** Upper bounds, in seconds, of the `/run` duration histogram's buckets. */
export const RUN_DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** A fixed-bucket histogram, rendered as Prometheus `_bucket`, `_sum` and `_count` lines. */
export class Histogram {
  readonly #bounds: readonly number[];
  /** Non-cumulative counts; the last slot is the +Inf overflow. */
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    bounds: readonly number[],
  ) {
    this.#bounds = bounds;
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  get count(): number {
    return this.#count;
  }

  get sum(): number {
    return this.#sum;
  }

  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} histogram\n`;
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i]!;
      out += `${this.name}_bucket{le="${formatValue(this.#bounds[i]!)}"} ${cumulative}\n`;
    }
    out += `${this.name}_bucket{le="+Inf"} ${this.#count}\n`;
    out += `${this.name}_sum ${formatValue(this.#sum)}\n${this.name}_count ${this.#count}\n`;
    return out;
  }
}
