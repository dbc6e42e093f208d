import { isOlError } from "@openlambda/sandbox-core";
import { cac } from "cac";
import { version } from "./version.js";

/** Exit codes: 0 ok, 1 a failure the worker reported (OL_* code), 2 a usage error, 70 a bug. */
export const EXIT = { ok: 0, failure: 1, usage: 2, internal: 70 } as const;

/** Builds the `ol` command line. Each command's module is imported only when it runs. */
export function buildCli() {
  const cli = cac("ol");
  cli.version(version);
  cli.help();
  return cli;
}

export async function main(argv: readonly string[]): Promise<number> {
  const cli = buildCli();
  try {
    cli.parse([...argv], { run: false });
    if (!cli.matchedCommand) {
      if (!cli.options.help && !cli.options.version) cli.outputHelp();
      return cli.args.length > 0 ? EXIT.usage : EXIT.ok;
    }
    await cli.runMatchedCommand();
    return EXIT.ok;
  } catch (error) {
    return reportError(error);
  }
}

/** One readable line per failure: the OL_* code first, so scripts and people both can read it. */
export function reportError(error: unknown): number {
  if (isOlError(error)) {
    process.stderr.write(`ol: ${error.code}: ${error.message}\n`);
    return EXIT.failure;
  }
  if (error instanceof Error && error.name === "CACError") {
    process.stderr.write(`ol: ${error.message} (see ol --help)\n`);
    return EXIT.usage;
  }
  process.stderr.write(
    `ol: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  return EXIT.internal;
}
