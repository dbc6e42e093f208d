import { isOlError } from "@openlambda/sandbox-core";
import { cac } from "cac";
import { version } from "./version.js";
import { DEFAULT_WORKER_DIR } from "./worker/layout.js";

/** Exit codes: 0 ok, 1 a failure the worker reported (OL_* code), 2 a usage error, 70 a bug. */
export const EXIT = { ok: 0, failure: 1, usage: 2, internal: 70 } as const;

/** Builds the `ol` command line. Each command's module is imported only when it runs. */
export function buildCli() {
  const cli = cac("ol");
  const dirOption = [
    "-p, --path <dir>",
    "Worker directory",
    { default: DEFAULT_WORKER_DIR },
  ] as const;

  cli
    .command(
      "worker init",
      "Make a worker directory: config.json, admin token, registry, base root filesystem",
    )
    .option(...dirOption)
    .action(async (o: { path: string }) => (await import("./commands/init.js")).run(o));

  cli
    .command("worker up", "Run the worker (initialising the directory when needed)")
    .option(...dirOption)
    .option("-o, --option <key=value>", "Override one config.json field (repeatable)", {
      default: [],
    })
    .option("-d, --detach", "Run in the background; wait until it is ready")
    .option("--verbose", "Debug logging")
    .action(
      async (o: { path: string; option: string | string[]; detach?: boolean; verbose?: boolean }) =>
        (await import("./commands/up.js")).run({
          path: o.path,
          option: ([] as string[]).concat(o.option),
          detach: o.detach === true,
          verbose: o.verbose === true,
        }),
    );

  cli
    .command("worker down", "Stop the worker and remove everything it made")
    .option(...dirOption)
    .action(async (o: { path: string }) => (await import("./commands/down.js")).run(o));

  cli
    .command("worker status", "Show whether the worker runs, and its stats")
    .option(...dirOption)
    .option("--json", "Machine-readable output")
    .action(async (o: { path: string; json?: boolean }) =>
      (await import("./commands/status.js")).run({ path: o.path, json: o.json === true }),
    );

  cli
    .command(
      "worker force-cleanup",
      "Kill the worker if it runs and remove its mounts, cgroups, processes and containers",
    )
    .option(...dirOption)
    .option("--json", "Machine-readable output")
    .action(async (o: { path: string; json?: boolean }) =>
      (await import("./commands/force-cleanup.js")).run({ path: o.path, json: o.json === true }),
    );

  cli
    .command("admin install <dir>", "Pack a lambda directory and upload it to the worker")
    .option(...dirOption)
    .option("-n, --name <name>", "Lambda name (default: the directory's name)")
    .option("--url <url>", "Worker URL (default: from the worker directory)")
    .option("--json", "Machine-readable output")
    .action(async (dir: string, o: { path: string; name?: string; url?: string; json?: boolean }) =>
      (await import("./commands/admin-install.js")).run(dir, {
        path: o.path,
        json: o.json === true,
        ...(o.name === undefined ? {} : { name: String(o.name) }),
        ...(o.url === undefined ? {} : { url: o.url }),
      }),
    );

  cli.version(version);
  cli.help();
  return cli;
}

/** Command groups whose second word names the command (`ol worker up`). */
const GROUPS = new Set(["worker", "admin"]);

/** cac matches one word; `worker up` becomes the single word cac's command is named by. */
function joinGroup(argv: readonly string[]): string[] {
  const out = [...argv];
  const group = out[2];
  const sub = out[3];
  if (group && GROUPS.has(group) && sub && !sub.startsWith("-"))
    out.splice(2, 2, `${group} ${sub}`);
  return out;
}

export async function main(argv: readonly string[]): Promise<number> {
  const cli = buildCli();
  try {
    cli.parse(joinGroup(argv), { run: false });
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
