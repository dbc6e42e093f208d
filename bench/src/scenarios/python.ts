// Python first responses on SOCK, with fork zygotes (the import cache) on and off:
// - a never-seen `def f` lambda, cold vs forked from the root zygote;
// - a never-seen lambda importing a heavy fixture package (~100 ms of standard-library imports),
//   cold, forked from a zygote without its package (the root's), and forked from a tree node
//   whose zygote has imported it (a matching zygote).
// Standalone: `cd bench && tsx src/scenarios/python.ts [N]`.
// Each call is to a lambda the worker has never seen, so each is a new sandbox (create or fork).
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { request } from "undici";
import type { BenchOptions } from "../lib/options.js";
import { progress, Report } from "../lib/report.js";
import { fmt, summarize } from "../lib/stats.js";
import { startWorker } from "../lib/worker.js";

const PLAIN = "def f(event):\n    return event\n";
// About 100 ms of imports on python3.11 (asyncio, email, http, xml, decimal, json, ...).
const HEAVY_PACKAGE = [
  "import asyncio, decimal, email.mime.multipart, email.parser, http.client, json",
  "import logging.handlers, xml.dom.minidom, urllib.request, unittest, argparse, zipfile",
  "VALUE = 1",
  "",
].join("\n");
const HEAVY = "import ol_heavy\ndef f(event):\n    return event\n";
const HEAVY_REQ = "ol-heavy==1.0.0\n";

/** A pure-Python wheel built by hand (no setuptools, no index). */
function buildWheel(dir: string, name: string, version: string, module: string, source: string) {
  const script = `
import base64, hashlib, sys, zipfile
dir, name, version, module, source = sys.argv[1:6]
dist = name.replace("-", "_")
def rec(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
files = {
    module + "/__init__.py": source.encode(),
    f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n".encode(),
    f"{dist}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: ol-bench\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
rows = [f"{p},{rec(d)},{len(d)}" for p, d in files.items()] + [f"{dist}-{version}.dist-info/RECORD,,"]
files[f"{dist}-{version}.dist-info/RECORD"] = ("\\n".join(rows) + "\\n").encode()
with zipfile.ZipFile(f"{dir}/{dist}-{version}-py3-none-any.whl", "w") as z:
    for p, d in files.items():
        z.writestr(p, d)
`;
  const run = spawnSync("/usr/bin/python3", ["-c", script, dir, name, version, module, source], {
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`building the wheel failed: ${run.stderr}`);
}

async function writePy(
  registry: string,
  name: string,
  source: string,
  requirements?: string,
): Promise<void> {
  await mkdir(join(registry, name), { recursive: true });
  await writeFile(join(registry, name, "f.py"), source);
  if (requirements) await writeFile(join(registry, name, "requirements.txt"), requirements);
}

type Config = "off" | "root" | "node";
// `def f` has no packages: the root's zygote is its matching one in both "on" configs.
const CONFIG_LABEL: Record<Config, string> = {
  off: "off (cold create)",
  root: "on, tree = root only",
  node: "on, tree = root + ol-heavy node",
};

async function firstResponses(
  config: Config,
  n: number,
  wheels: string,
): Promise<{ plain: number[]; heavy: number[]; stats: Record<string, number> }> {
  const tree = join(wheels, `tree-${config}.json`);
  const children = config === "node" ? [{ packages: ["ol-heavy==1.0.0"] }] : [];
  await writeFile(tree, JSON.stringify({ packages: [], children }));
  const worker = await startWorker({
    name: `python-${config}`,
    overrides: [
      `features.import_cache=${config === "off" ? "" : "tree"}`,
      `import_cache_tree=${tree}`,
      "pause_idle_ms=1000",
      "pip_index=none",
      `pip_find_links=${wheels}`,
    ],
    fill: async (registry) => {
      await writePy(registry, "heavy-warm", HEAVY, HEAVY_REQ);
      for (let i = 0; i < n; i++) {
        await writePy(registry, `plain-${i}`, PLAIN);
        await writePy(registry, `heavy-${i}`, HEAVY, HEAVY_REQ);
      }
    },
  });
  const plain: number[] = [];
  const heavy: number[] = [];
  const call = async (name: string) => {
    const t0 = performance.now();
    const res = await request(`${worker.url}/run/${name}`, { method: "POST", body: '{"n":1}' });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${name}: ${res.statusCode} ${text}`);
    return performance.now() - t0;
  };
  try {
    // Installs the fixture package once (shared by every heavy lambda), and lets background
    // work (zygotes starting) settle before measuring.
    await call("heavy-warm");
    await new Promise((r) => setTimeout(r, 2000));
    const only = process.env.OL_BENCH_PY_ONLY;
    for (let i = 0; i < n; i++) {
      if (only !== "heavy") plain.push(await call(`plain-${i}`));
      if (only !== "plain") heavy.push(await call(`heavy-${i}`));
    }
    return { plain, heavy, stats: await worker.stats() };
  } finally {
    await worker.stop();
  }
}

export async function python(o: Pick<BenchOptions, "coldN"> | undefined): Promise<Report> {
  const n = o?.coldN ?? 30;
  const report = new Report("python");
  report.params = { n };
  report.header = ["case", "fork zygotes", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"];
  const wheels = join("/tmp/ol-bench", "python-wheels");
  await mkdir(wheels, { recursive: true });
  buildWheel(wheels, "ol-heavy", "1.0.0", "ol_heavy", HEAVY_PACKAGE);
  for (const config of ["off", "root", "node"] as const) {
    progress(`python: ${n} never-seen lambdas of each kind, fork zygotes ${CONFIG_LABEL[config]}`);
    const r = await firstResponses(config, n, wheels);
    const rows = [
      ["def f, first response", r.plain],
      ["heavy imports (fixture package), first response", r.heavy],
    ] as const;
    for (const [kind, samples] of rows) {
      const s = summarize(samples);
      report.rows.push([
        kind,
        CONFIG_LABEL[config],
        s.n,
        fmt(s.p50),
        fmt(s.p90),
        fmt(s.p99),
        fmt(s.max),
      ]);
    }
    const forks = Object.entries(r.stats).filter(
      ([k]) => k.startsWith("zygote") || k.startsWith("sandbox-create"),
    );
    progress(`python: ${config}: ${forks.map(([k, v]) => `${k}=${v}`).join(" ") || "no zygotes"}`);
    report.data[config] = r;
  }
  return report;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = Number(process.argv[2] ?? 30);
  const report = await python({ coldN: n });
  process.stdout.write(`${report.table()}\n`);
  process.stdout.write(`wrote ${await report.write()}\n`);
}
