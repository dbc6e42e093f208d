/**
 * Cold start and warm invocation latency, Docker and SOCK side by side, in one run.
 *
 *   pnpm --filter @openlambda/sandbox-docker bench [-- --cold 20 --warm 500]
 *
 * Cold: `create()` until the guest answers its first request (GET /ping) over /host/ol.sock.
 * Warm: one request to a running guest over the kept-alive socket. Both backends run the same
 * guest (sandbox-core's conformance guest, node) on the same base root filesystem (sandbox-sock's
 * `buildBaseRootfs`; Docker imports it as its image, once per base hash, before timing starts).
 * Runs as root with a Docker engine; SOCK is measured when `@openlambda/sandbox-sock` exports
 * `sockBackend` and the host allows it, and reported as unavailable (with why) otherwise.
 * Not a test: it prints a table and exits.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import { CONFORMANCE_GUEST_SOURCE } from "@openlambda/sandbox-core/conformance";
import { dockerBackend } from "@openlambda/sandbox-docker";
import { request } from "undici";

const { values } = parseArgs({
  // pnpm passes a literal "--" through to the script.
  args: process.argv.slice(2).filter((a) => a !== "--"),
  options: { cold: { type: "string", default: "20" }, warm: { type: "string", default: "500" } },
});
const COLD = Number(values.cold);
const WARM = Number(values.warm);

interface SockModule {
  buildBaseRootfs?: (o: { dir: string }) => Promise<{ dir: string; hash: string }>;
  sockBackend?: (o: { workDir: string; baseDir: string }) => SandboxBackend;
}

interface Result {
  cold: number[];
  warm: number[];
}

async function ping(sandbox: Sandbox): Promise<void> {
  const res = await request("http://guest/ping", { dispatcher: sandbox.dispatcher });
  const text = await res.body.text();
  if (text !== "pong") throw new Error(`guest answered ${res.statusCode} ${text}`);
}

async function measure(backend: SandboxBackend, spec: SandboxSpec, label: string): Promise<Result> {
  const cold: number[] = [];
  // One untimed create first: the first start pays one-off costs (page cache, engine warm-up).
  await (await backend.create(spec)).destroy();
  for (let i = 0; i < COLD; i++) {
    const t0 = performance.now();
    const sandbox = await backend.create(spec);
    await ping(sandbox);
    cold.push(performance.now() - t0);
    await sandbox.destroy();
  }
  const sandbox = await backend.create(spec);
  const warm: number[] = [];
  try {
    for (let i = 0; i < 50; i++) await ping(sandbox);
    for (let i = 0; i < WARM; i++) {
      const t0 = performance.now();
      await ping(sandbox);
      warm.push(performance.now() - t0);
    }
  } finally {
    await sandbox.destroy();
  }
  process.stderr.write(`${label}: ${COLD} cold starts, ${WARM} warm calls done\n`);
  return { cold, warm };
}

function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

const fmt = (ms: number) => (Number.isNaN(ms) ? "-" : ms < 10 ? ms.toFixed(2) : ms.toFixed(1));

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "ol-bench-"));
  const sock = (await import("@openlambda/sandbox-sock").catch(() => ({}))) as SockModule;
  if (typeof sock.buildBaseRootfs !== "function") {
    throw new Error("@openlambda/sandbox-sock does not export buildBaseRootfs: build it first");
  }
  const backends: SandboxBackend[] = [];
  try {
    const base = await sock.buildBaseRootfs({ dir: join(work, "base") });
    const codeDir = join(work, "code");
    await import("node:fs/promises").then((fs) => fs.mkdir(codeDir, { mode: 0o755 }));
    await writeFile(join(codeDir, "guest.mjs"), CONFORMANCE_GUEST_SOURCE);
    const spec: SandboxSpec = {
      codeDir,
      runtime: "node",
      command: ["node", "/handler/guest.mjs"],
      limits: { memoryMb: 256, cpuPercent: 100, procs: 64, timeoutMs: 10_000 },
    };

    const docker = dockerBackend({
      baseDir: base.dir,
      baseHash: base.hash,
      workerId: `ol-bench-${process.pid}`,
    });
    backends.push(docker);
    const t0 = performance.now();
    const ready = await docker.ready();
    process.stderr.write(
      `docker: engine ${ready.engine.version} (API ${ready.engine.apiVersion}), image ${ready.image} ` +
        `${ready.imageBuilt ? `imported in ${((performance.now() - t0) / 1000).toFixed(1)} s` : "already present"}\n`,
    );
    const results: Record<string, Result | string> = {};
    results.docker = await measure(docker, spec, "docker");

    if (typeof sock.sockBackend !== "function") {
      results.sock = "sock unavailable: @openlambda/sandbox-sock does not export sockBackend";
    } else {
      try {
        const backend = sock.sockBackend({ workDir: join(work, "sock"), baseDir: base.dir });
        backends.push(backend);
        results.sock = await measure(backend, spec, "sock");
      } catch (error) {
        results.sock = `sock unavailable: ${(error as Error).message}`;
      }
    }
    printTable(results);
  } finally {
    for (const b of backends) await b.cleanup().catch(() => {});
    await rm(work, { recursive: true, force: true });
  }
}

function printTable(results: Record<string, Result | string>): void {
  const d = results.docker as Result;
  const s = typeof results.sock === "string" ? undefined : results.sock;
  const rows: string[][] = [
    ["metric", "docker median", "docker p99", "sock median", "sock p99", "docker/sock (median)"],
  ];
  for (const [name, pick] of [
    [`cold start, ms (n=${COLD})`, (r: Result) => r.cold],
    [`warm call, ms (n=${WARM})`, (r: Result) => r.warm],
  ] as const) {
    const dm = quantile(pick(d), 0.5);
    const sm = s ? quantile(pick(s), 0.5) : Number.NaN;
    rows.push([
      name,
      fmt(dm),
      fmt(quantile(pick(d), 0.99)),
      fmt(sm),
      s ? fmt(quantile(pick(s), 0.99)) : "-",
      s ? `${(dm / sm).toFixed(1)}x` : "-",
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const [i, row] of rows.entries()) {
    console.log(
      row
        .map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!)))
        .join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
  if (typeof results.sock === "string") console.log(results.sock);
}

await main();
