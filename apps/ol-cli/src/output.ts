import type { Logger } from "@openlambda/sandbox-core";

/** A readable table: columns padded to their widest cell. */
export function table(
  rows: readonly (readonly (string | number)[])[],
  header?: readonly string[],
): string {
  const all = header ? [header, ...rows] : rows;
  const widths: number[] = [];
  for (const row of all) {
    for (const [i, cell] of row.entries())
      widths[i] = Math.max(widths[i] ?? 0, String(cell).length);
  }
  const line = (row: readonly (string | number)[]) =>
    row
      .map((cell, i) => String(cell).padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  const out = all.map(line);
  if (header) out.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  return `${out.join("\n")}\n`;
}

export function print(text: string): void {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

/** Progress lines for long steps go to stderr, so `--json` output on stdout stays clean. */
export function progress(message: string): void {
  process.stderr.write(`==> ${message}\n`);
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
type Level = keyof typeof LEVELS;

/** The worker's log: one line per event on stderr, `time level msg key=value`. */
export function consoleLogger(min: Level = "info", bindings: Record<string, unknown> = {}): Logger {
  const emit = (level: Level) => (obj: object | string, msg?: string) => {
    if (LEVELS[level] < LEVELS[min]) return;
    const fields = { ...bindings, ...(typeof obj === "string" ? {} : obj) };
    const text = typeof obj === "string" ? obj : (msg ?? "");
    const extras = Object.entries(fields)
      .map(([k, v]) => `${k}=${v instanceof Error ? JSON.stringify(v.message) : JSON.stringify(v)}`)
      .join(" ");
    process.stderr.write(
      `${new Date().toISOString()} ${level.padEnd(5)} ${text}${extras ? ` ${extras}` : ""}\n`,
    );
  };
  return {
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    child: (more) => consoleLogger(min, { ...bindings, ...more }),
  };
}
