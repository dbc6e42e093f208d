import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import type { BenchOptions } from "../lib/options.js";
import { progress, Report } from "../lib/report.js";
import { summarize } from "../lib/stats.js";
import { cdfSvg } from "../lib/svg.js";
import { startWorker } from "../lib/worker.js";
import { zygoteSupport } from "../lib/zygotes.js";

/** Pure-JS packages with no dependencies of their own, heavy enough to show import time. */
const DEPS: Record<string, string> = { yaml: "2.9.1", acorn: "8.15.0", "js-yaml": "4.1.0" };
const SOURCE = `const yaml = require("yaml");
const acorn = require("acorn");
const jsyaml = require("js-yaml");
exports.f = (event) => ({ ok: typeof yaml.parse + typeof acorn.parse + typeof jsyaml.load, event });
`;

async function heavyLambda(registry: string, name: string): Promise<void> {
  const dir = join(registry, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "f.js"), SOURCE);
  await writeFile(
    join(dir, "package.json"),
    `${JSON.stringify({ name, private: true, dependencies: DEPS }, null, 2)}\n`,
  );
}

/** How far apart the timed lambdas arrive, ms: a ready runtime of this node starts in less. */
const PACE_MS = 400;

/** Waits (at most 60 s) until the worker's /stats counts `want` ready runtimes. */
async function readyRuntimes(url: string, want: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (want > 0 && Date.now() < deadline) {
    const stats = (await (await request(`${url}/stats`)).body.json()) as Record<string, number>;
    if ((stats["zygote.ready"] ?? 0) >= want) return;
    await sleep(200);
  }
}

async function series(
  name: string,
  overrides: string[],
  n: number,
  tree?: unknown,
): Promise<number[]> {
  const names = Array.from({ length: n + 1 }, (_, i) => `heavy-${i}`);
  const w = await startWorker({
    name,
    overrides,
    fill: async (r) => {
      for (const l of names) await heavyLambda(r, l);
      if (tree) await writeFile(join(r, "..", "tree.json"), JSON.stringify(tree));
    },
  });
  const out: number[] = [];
  try {
    const call = async (l: string) => {
      const t0 = performance.now();
      const res = await request(`${w.url}/run/${l}`, {
        method: "POST",
        body: "{}",
        headersTimeout: 300_000,
        bodyTimeout: 300_000,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200)
        throw new Error(`${l}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
      return performance.now() - t0;
    };
    // The first lambda installs the shared package versions: not a cold start, not counted.
    progress(`${name}: installing the dependencies once (${Object.keys(DEPS).join(", ")})`);
    await call(names[0] as string);
    // The first call also asked for the matching tree node: let its ready runtimes (and the
    // root's) start before timing, as they would between a deployment and its traffic.
    await readyRuntimes(w.url, tree ? 5 : overrides.includes("features.import_cache=") ? 0 : 3);
    for (const l of names.slice(1)) {
      await sleep(PACE_MS);
      out.push(await call(l));
    }
  } finally {
    await w.stop();
  }
  return out;
}

/**
 * Cold start of a dependency-heavy lambda with and without a matching zygote (issue 5). Until
 * the build has zygotes it says so and measures nothing.
 */
export async function packages(o: BenchOptions): Promise<Report> {
  const report = new Report("packages");
  const n = Math.max(3, Math.min(10, Math.floor(o.coldN / 3)));
  report.params = { n, deps: DEPS };
  const zyg = await zygoteSupport();
  report.data.zygotes = zyg;
  report.header = [
    `cold start, lambda importing ${Object.keys(DEPS).join(" + ")}`,
    "n",
    "p50 ms",
    "p99 ms",
    "min ms",
    "max ms",
  ];
  if (!zyg.available) {
    report.note(`zygotes not available in this build (${zyg.how}); packages scenario skipped`);
    return report;
  }
  const root = "/tmp/ol-bench";
  const matching = {
    packages: [],
    children: [{ packages: Object.entries(DEPS).map(([p, v]) => `${p}@${v}`), children: [] }],
  };
  const s: { key: string; label: string; samples: number[] }[] = [];
  try {
    s.push({
      key: "match",
      label: "zygote with the packages",
      samples: await series(
        "pkg-match",
        ["features.import_cache=tree", `import_cache_tree=${root}/pkg-match/tree.json`],
        n,
        matching,
      ),
    });
    s.push({
      key: "root",
      label: "root zygote only",
      samples: await series("pkg-root", ["features.import_cache=tree"], n),
    });
    s.push({
      key: "off",
      label: "zygotes off",
      samples: await series("pkg-off", ["features.import_cache="], n),
    });
  } catch (error) {
    report.note(`packages failed: ${(error as Error).message.split("\n")[0]}`);
  }
  const sum = new Map(s.map((x) => [x.key, summarize(x.samples)]));
  for (const x of s) {
    const m = sum.get(x.key);
    if (m) report.rows.push([x.label, m.n, m.p50, m.p99, m.min, m.max]);
  }
  const match = sum.get("match");
  for (const [k, name] of [
    ["root", "root zygote only"],
    ["off", "zygotes off"],
  ] as const) {
    const peer = sum.get(k);
    if (match && peer)
      report.addRatio({
        what: "heavy-lambda cold p50, matching zygote",
        ours: match.p50,
        peer: peer.p50,
        peerName: name,
        unit: "ms",
        better: "lower",
      });
  }
  report.data.samplesMs = Object.fromEntries(s.map((x) => [x.key, x.samples]));
  report.chart(
    "packages-cdf",
    cdfSvg({
      title: "Cold start of a dependency-heavy lambda",
      unit: "first-response latency, ms",
      series: s,
    }),
  );
  return report;
}
