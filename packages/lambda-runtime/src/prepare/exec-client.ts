import { createInterface } from "node:readline";
import { type Dispatcher, request } from "undici";

export interface ExecRequest {
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Each line of output as it comes (progress). */
  readonly onLine?: (line: string) => void;
}

export interface ExecResult {
  readonly exit: number;
  /** The last 200 lines of output. */
  readonly lines: readonly string[];
}

/** Runs a command in a sandbox whose guest is the exec guest (src/guest/exec-guest.ts). */
export async function execInSandbox(dispatcher: Dispatcher, run: ExecRequest): Promise<ExecResult> {
  const res = await request("http://installer/run", {
    dispatcher,
    method: "POST",
    body: JSON.stringify({ argv: run.argv, cwd: run.cwd, env: run.env }),
    signal: AbortSignal.timeout(run.timeoutMs),
  });
  const lines: string[] = [];
  let exit = 1;
  for await (const raw of createInterface({ input: res.body })) {
    const msg = JSON.parse(raw) as { line?: string; exit?: number };
    if (msg.line !== undefined) {
      lines.push(msg.line);
      if (lines.length > 200) lines.shift();
      run.onLine?.(msg.line);
    }
    if (msg.exit !== undefined) exit = msg.exit;
  }
  return { exit, lines };
}

/** The lines that say what failed (those matching `pattern`), or the last lines. */
export function summariseFailure(lines: readonly string[], pattern: RegExp, tool: string): string {
  const errors = lines.filter((l) => pattern.test(l)).slice(0, 4);
  return (
    (errors.length > 0 ? errors : lines.slice(-4)).join(" | ").slice(0, 2000) ||
    `${tool} exited with an error`
  );
}
