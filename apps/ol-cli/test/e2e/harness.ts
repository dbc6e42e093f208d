/**
 * The end-to-end harness: a real `ol worker up` child process on a temp worker dir, talked to
 * over real HTTP on 127.0.0.1. Each suite starts its worker in beforeAll and stops it in
 * afterAll (SIGTERM; SIGKILL plus `ol worker force-cleanup` when it hangs), then checks that
 * nothing of it is left (mounts under the dir, cgroups, processes, containers) before it
 * removes the dir.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { describe, it } from "vitest";

export const CLI = fileURLToPath(new URL("../../dist/bin.js", import.meta.url));
const DOCKER_SOCKET = process.env.DOCKER_HOST?.startsWith("unix://")
  ? process.env.DOCKER_HOST.slice("unix://".length)
  : "/var/run/docker.sock";

// --- backends ------------------------------------------------------------------------------

export type BackendName = "sock" | "docker";

export interface Backend {
  readonly name: BackendName;
  /** `-o` overrides selecting it. */
  readonly options: readonly string[];
  /** Why it cannot run here; empty when it can. */
  readonly missing: string;
  /** Missing and required (OL_REQUIRE_DOCKER=1): the suite must fail, not skip. */
  readonly required: boolean;
}

/** What SOCK needs from the host that is not here, or "" when it can run. */
export function sockMissing(): string {
  const missing: string[] = [];
  if (process.platform !== "linux") return `Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) missing.push(`root (running as uid ${process.getuid?.()})`);
  const mounts = readFileSync("/proc/self/mountinfo", "utf8");
  if (!/ - cgroup2? /.test(mounts)) missing.push("a mounted cgroup filesystem (v1 or v2)");
  return missing.join(", ");
}

/** Why no Docker engine answers on its socket, or "" when one does. */
export async function dockerMissing(): Promise<string> {
  if (!existsSync(DOCKER_SOCKET)) return `no socket at ${DOCKER_SOCKET}`;
  try {
    const res = await dockerApi("GET", "/_ping");
    return res.status === 200 ? "" : `GET /_ping answered ${res.status}`;
  } catch (error) {
    return `${DOCKER_SOCKET}: ${(error as Error).message}`;
  }
}

/** The backends this run covers: sock always, docker when an engine answers or is required. */
export async function backends(): Promise<Backend[]> {
  const dockerWhy = await dockerMissing();
  // OL_E2E_BACKENDS=sock (or docker) narrows a local run to one backend.
  const only = process.env.OL_E2E_BACKENDS?.split(",").map((s) => s.trim());
  const all: Backend[] = [
    { name: "sock", options: ["sandbox=sock"], missing: sockMissing(), required: false },
    {
      name: "docker",
      options: ["sandbox=docker"],
      missing: dockerWhy && `a Docker engine (${dockerWhy})`,
      required: process.env.OL_REQUIRE_DOCKER === "1",
    },
  ];
  return only ? all.filter((b) => only.includes(b.name)) : all;
}

/** A suite title that says why it skips. */
export function suiteTitle(title: string, backend: Backend): string {
  return backend.missing ? `${title} [skipped: ${backend.name} needs ${backend.missing}]` : title;
}

/**
 * Declares `body` once per backend: run when it can, skipped with the reason when it cannot,
 * and failed when it cannot but is required (OL_REQUIRE_DOCKER=1 in CI).
 */
export async function describeBackends(
  title: string,
  body: (backend: Backend) => void,
): Promise<void> {
  for (const backend of await backends()) {
    const name = `${title} [${backend.name}]`;
    if (backend.missing && backend.required) {
      describe(name, () => {
        it("has a Docker engine to run on (OL_REQUIRE_DOCKER=1)", () => {
          throw new Error(
            `OL_REQUIRE_DOCKER=1 but the ${backend.name} backend cannot run: ${backend.missing}`,
          );
        });
      });
    } else if (backend.missing) {
      console.warn(`[e2e] ${name} skipped: it needs ${backend.missing}`);
      describe.skip(suiteTitle(name, backend), () => body(backend));
    } else {
      describe(name, () => body(backend));
    }
  }
}

// --- lambdas -------------------------------------------------------------------------------

/** A lambda as files: path relative to its root → content. */
export type LambdaFiles = Readonly<Record<string, string | Buffer>>;

export async function writeLambda(dir: string, files: LambdaFiles): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

export interface TarEntry {
  readonly name: string;
  readonly data?: string | Buffer;
  /** "0" file (default), "5" directory, "2" symlink, "1" hard link, "3" char device. */
  readonly type?: string;
  readonly linkname?: string;
  /** Claimed size when it differs from the data's. */
  readonly size?: number;
}

/** A ustar archive built by hand, so the tests can make entries no honest tool would. */
export function tarBytes(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const header = Buffer.alloc(512);
    header.write(e.name, 0, 100, "utf8");
    header.write(`${(e.type === "5" ? 0o755 : 0o644).toString(8).padStart(7, "0")}\0`, 100);
    header.write("0000000\0", 108);
    header.write("0000000\0", 116);
    header.write(`${(e.size ?? data.length).toString(8).padStart(11, "0")}\0`, 124);
    header.write(`${Math.floor(Date.now() / 1000).toString(8)}\0`, 136);
    header.write(e.type ?? "0", 156);
    if (e.linkname) header.write(e.linkname, 157, 100, "utf8");
    header.write("ustar\0", 257);
    header.write("00", 263);
    header.fill(" ", 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export function tarGz(entries: readonly TarEntry[]): Buffer {
  return gzipSync(tarBytes(entries));
}

/** A lambda's files as a .tar.gz. */
export function lambdaArchive(files: LambdaFiles): Buffer {
  return tarGz(Object.entries(files).map(([name, data]) => ({ name, data })));
}

// --- the worker ----------------------------------------------------------------------------

export interface StartOptions {
  readonly backend: Backend;
  /** More `-o key=value` overrides. */
  readonly options?: readonly string[];
  /** Lambdas written into the registry before start (the examples are then not seeded). */
  readonly lambdas?: Readonly<Record<string, LambdaFiles>>;
}

export interface RunResult {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The body parsed as JSON, or undefined. */
  readonly json: unknown;
  readonly ms: number;
}

/** A worker directory: paths and the identities its backend tags things with. */
export class WorkerDir {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }
  static async make(): Promise<WorkerDir> {
    return new WorkerDir(await mkdtemp(join(tmpdir(), "ol-e2e-")));
  }
  get registry(): string {
    return join(this.dir, "registry");
  }
  get code(): string {
    return join(this.dir, "code");
  }
  /**
   * The SOCK backend's tags (packages/sandbox-sock/src/worker-tag.ts: a hash of its work dir)
   * for the work dirs the CLI has used: DIR/sock, and DIR/sandboxes before that.
   */
  get sockTags(): string[] {
    return ["sock", "sandboxes"].map(
      (d) => `ol-${createHash("sha256").update(join(this.dir, d)).digest("hex").slice(0, 10)}`,
    );
  }
  /** The Docker label value tying containers to this dir (apps/ol-cli/src/worker/backend.ts). */
  get dockerWorkerId(): string {
    return `ol-${createHash("sha256").update(this.dir).digest("hex").slice(0, 12)}`;
  }
  async token(): Promise<string> {
    return (await readFile(join(this.dir, "token"), "utf8")).trim();
  }
  async pidRecord(): Promise<{ pid: number; url: string; startedAt: string } | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, "worker.pid"), "utf8"));
    } catch {
      return undefined;
    }
  }

  /** Everything of this worker still on the host: mounts, cgroups, processes, containers. */
  async leftovers(): Promise<string[]> {
    const found: string[] = [];
    for (const m of mountsUnder(this.dir)) found.push(`mount ${m}`);
    for (const c of this.sockTags.flatMap(cgroupDirs)) found.push(`cgroup ${c}`);
    for (const p of processesOf(this.dir)) found.push(`process ${p}`);
    if ((await dockerMissing()) === "") {
      for (const c of await containersOf(this.dockerWorkerId)) found.push(`container ${c}`);
    }
    return found;
  }

  /** Removes the dir, but never through a mount that is still there. */
  async remove(): Promise<void> {
    const mounts = mountsUnder(this.dir);
    if (mounts.length > 0) {
      throw new Error(`not removing ${this.dir}: still mounted: ${mounts.join(", ")}`);
    }
    await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** Runs `ol ...` against this dir; resolves with its exit code and output. */
  ol(args: readonly string[], timeoutMs = 120_000): OlResult {
    const run = spawnSync(process.execPath, [CLI, ...args], {
      encoding: "utf8",
      timeout: timeoutMs,
      killSignal: "SIGKILL",
    });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }
}

export interface OlResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export class Worker {
  readonly wd: WorkerDir;
  readonly backend: Backend;
  readonly url: string;
  readonly token: string;
  readonly child: ChildProcess;
  readonly #output: string[];

  private constructor(
    wd: WorkerDir,
    backend: Backend,
    url: string,
    token: string,
    child: ChildProcess,
    output: string[],
  ) {
    this.wd = wd;
    this.backend = backend;
    this.url = url;
    this.token = token;
    this.child = child;
    this.#output = output;
  }

  get dir(): string {
    return this.wd.dir;
  }

  /** The worker's last output lines, for failure messages. */
  tail(lines = 40): string {
    return this.#output.join("").split("\n").slice(-lines).join("\n");
  }

  /** Makes a worker dir, writes the lambdas, starts `ol worker up` and waits until ready. */
  static async start(options: StartOptions): Promise<Worker> {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the CLI first (pnpm build)`);
    const wd = await WorkerDir.make();
    for (const [name, files] of Object.entries(options.lambdas ?? {})) {
      await writeLambda(join(wd.registry, name), files);
    }
    return Worker.startOn(wd, options);
  }

  /** Starts `ol worker up` on an existing dir. */
  static async startOn(wd: WorkerDir, options: StartOptions): Promise<Worker> {
    const overrides = [
      "worker_port=0",
      "worker_url=127.0.0.1",
      ...options.backend.options,
      ...(options.options ?? []),
    ];
    const args = [CLI, "worker", "up", "-p", wd.dir, ...overrides.flatMap((o) => ["-o", o])];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const output: string[] = [];
    const keep = (chunk: Buffer) => {
      output.push(chunk.toString("utf8"));
      if (output.length > 2000) output.splice(0, 1000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    let exited: string | undefined;
    child.once("exit", (code, signal) => {
      exited = `exited (code ${code}, signal ${signal})`;
    });
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      if (exited) break;
      const record = await wd.pidRecord();
      if (record && record.pid === child.pid && (await statusReady(record.url))) {
        return new Worker(wd, options.backend, record.url, await wd.token(), child, output);
      }
      await sleep(100);
    }
    if (!exited) child.kill("SIGKILL");
    await once(child);
    wd.ol(["worker", "force-cleanup", "-p", wd.dir]);
    const text = output.join("");
    await wd.remove().catch(() => {});
    throw new Error(`the worker did not become ready (${exited ?? "timed out"}):\n${text}`);
  }

  /**
   * Stops the worker with SIGTERM (SIGKILL and force-cleanup when it hangs), checks that it
   * left nothing behind, and removes its dir. Throws listing any leftovers.
   */
  async stop({ removeDir = true } = {}): Promise<void> {
    let forced = false;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      if (!(await once(this.child, 30_000))) {
        forced = true;
        this.child.kill("SIGKILL");
        await once(this.child);
        this.wd.ol(["worker", "force-cleanup", "-p", this.dir]);
      }
    }
    const left = await this.wd.leftovers();
    if (left.length > 0) this.wd.ol(["worker", "force-cleanup", "-p", this.dir]);
    if (removeDir) await this.wd.remove();
    if (forced) throw new Error(`the worker did not stop on SIGTERM in 30 s:\n${this.tail()}`);
    if (left.length > 0) {
      throw new Error(`the worker left behind: ${left.join("; ")}\n${this.tail()}`);
    }
  }

  /** Calls a lambda: `/run/NAME[/path]`. A string or object body is sent as JSON text. */
  run(
    nameAndPath: string,
    init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<RunResult> {
    const body =
      init.body === undefined
        ? undefined
        : typeof init.body === "string" || Buffer.isBuffer(init.body)
          ? (init.body as string | Buffer)
          : JSON.stringify(init.body);
    return this.fetch(`/run/${nameAndPath}`, {
      method: init.method ?? (body === undefined ? "GET" : "POST"),
      ...(init.headers ? { headers: init.headers } : {}),
      ...(body === undefined ? {} : { body }),
    });
  }

  /** Any request to the worker, answered in full. */
  async fetch(
    path: string,
    init: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
  ): Promise<RunResult> {
    const started = performance.now();
    const res = await fetch(`${this.url}${path}`, {
      method: init.method ?? "GET",
      ...(init.headers ? { headers: init.headers } : {}),
      ...(init.body === undefined
        ? {}
        : { body: typeof init.body === "string" ? init.body : new Uint8Array(init.body) }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      status: res.status,
      headers: res.headers,
      text,
      json,
      ms: performance.now() - started,
    };
  }

  /** An admin request, with the bearer token. */
  admin(
    path: string,
    init: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
  ): Promise<RunResult> {
    return this.fetch(path, {
      ...init,
      headers: { authorization: `Bearer ${this.token}`, ...init.headers },
    });
  }

  /**
   * Uploads a .tar.gz with raw HTTP (fetch cannot read an answer sent before the body ends).
   * `token: null` sends no Authorization header.
   */
  upload(
    name: string,
    archive: Buffer,
    token: string | null = this.token,
  ): Promise<{ status: number; text: string; json: unknown }> {
    return rawPost(
      `${this.url}/registry/${name}`,
      archive,
      token === null ? {} : { authorization: `Bearer ${token}` },
    );
  }

  async debug(): Promise<DebugView> {
    const res = await this.admin("/debug");
    if (res.status !== 200) throw new Error(`/debug answered ${res.status}: ${res.text}`);
    return res.json as DebugView;
  }

  /** The instances of one lambda (serving and draining). */
  async instances(lambda: string): Promise<DebugInstance[]> {
    const fn = (await this.debug()).lambdas.find((l) => l.name === lambda);
    return fn ? [...fn.instances, ...fn.draining] : [];
  }

  /** Polls /debug until `check` holds; throws with the last view after `timeoutMs`. */
  async waitFor(
    what: string,
    check: (view: DebugView) => boolean,
    timeoutMs = 15_000,
  ): Promise<DebugView> {
    const deadline = Date.now() + timeoutMs;
    let view = await this.debug();
    while (!check(view)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}; /debug: ${JSON.stringify(view)}`);
      }
      await sleep(50);
      view = await this.debug();
    }
    return view;
  }

  /**
   * Kills a sandbox's processes from the host with SIGKILL, as the OOM killer or an operator
   * would: exactly the pids of that sandbox (its cgroup's members; Docker's container pid).
   * Resolves with how many it killed.
   */
  async killSandbox(sandboxId: string): Promise<number> {
    let pids: number[];
    if (this.backend.name === "docker") {
      const [container] = await containersByLabel(`org.openlambda.sandbox=${sandboxId}`);
      if (!container) return 0;
      const res = await dockerApi("GET", `/containers/${container.Id}/json`);
      const pid = (JSON.parse(res.text) as { State?: { Pid?: number } }).State?.Pid ?? 0;
      pids = pid > 0 ? [pid] : [];
    } else {
      pids = sockSandboxPids(sandboxId);
    }
    for (const pid of pids) process.kill(pid, "SIGKILL");
    return pids.length;
  }

  /** Whether a sandbox's processes are frozen by the kernel (sock: freezer; docker: paused). */
  async kernelSaysPaused(sandboxId: string): Promise<boolean> {
    if (this.backend.name === "docker") {
      const [container] = await containersByLabel(`org.openlambda.sandbox=${sandboxId}`);
      return container?.State === "paused";
    }
    return sockFreezerState(sandboxId) === "FROZEN";
  }
}

export interface DebugInstance {
  readonly id: string;
  readonly version: string;
  readonly state: string;
  readonly invocations: number;
  readonly sandbox: { readonly id: string; readonly state: string } | null;
}

export interface DebugView {
  readonly memPool: { usedMb: number; totalMb: number; waiting: number };
  readonly lambdas: readonly {
    readonly name: string;
    readonly version: string;
    readonly queue: number;
    readonly instances: readonly DebugInstance[];
    readonly draining: readonly DebugInstance[];
  }[];
}

// --- host inspection -----------------------------------------------------------------------

/** Mount points at or under `dir` in this mount namespace. */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const point = line
      .split(" ")[4]
      ?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (point && (point === dir || point.startsWith(`${dir}/`))) out.push(point);
  }
  return out;
}

/** The cgroup hierarchies' roots (v1: one per mount; v2: the one). */
function cgroupRoots(): string[] {
  const roots = new Set<string>();
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-", 6);
    const type = fields[sep + 1];
    if (sep > 0 && (type === "cgroup" || type === "cgroup2") && fields[4]) roots.add(fields[4]);
  }
  return [...roots];
}

/** Cgroup dirs named with the worker's tag, in any hierarchy. */
export function cgroupDirs(tag: string): string[] {
  return cgroupRoots()
    .map((root) => join(root, tag))
    .filter((dir) => existsSync(dir));
}

/** Pids in the tag's cgroups (the sandboxes' processes). */
export function cgroupPids(tag: string): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    try {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n"))
        if (line.trim()) pids.add(Number(line));
      for (const e of readdirSync(dir, { withFileTypes: true }))
        if (e.isDirectory()) walk(join(dir, e.name));
    } catch {
      // Gone meanwhile.
    }
  };
  for (const dir of cgroupDirs(tag)) walk(dir);
  return [...pids];
}

/**
 * Processes whose command line, root, cwd or an open file mention `dir` (workers, helpers,
 * guests; a SOCK helper takes its paths on stdin but holds its sandbox's log open).
 */
export function processesOf(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
      const root = safeReadlink(`/proc/${entry}/root`);
      const cwd = safeReadlink(`/proc/${entry}/cwd`);
      const files = readdirSync(`/proc/${entry}/fd`).map((fd) =>
        safeReadlink(`/proc/${entry}/fd/${fd}`),
      );
      if (
        [cmdline, root, cwd, ...files].some(
          (s) => s === dir || s.includes(`${dir}/`) || s.includes(`${dir} `),
        )
      )
        found.push(`${entry} (${cmdline.trim().slice(0, 120)})`);
    } catch {
      // Exited meanwhile.
    }
  }
  return found;
}

function safeReadlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "";
  }
}

/** Whether a process lives (a zombie waiting for its parent to reap it does not). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The pids still alive after up to `timeoutMs` (killed ones take a moment to go). */
export async function survivors(pids: readonly number[], timeoutMs = 5000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await sleep(50);
    alive = alive.filter(isAlive);
  }
  return alive;
}

/** A SOCK sandbox's cgroup dirs (one per v1 hierarchy), from its helper's `--cgroup` args. */
export function sockCgroupsOf(sandboxId: string): string[] {
  // The helper's command line names no host path (it takes them on stdin): find it by the
  // sandbox's log, which it holds open, then read its init's cgroups from /proc.
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    let fds: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (!argv[0]?.endsWith("ol-sock-helper")) continue;
      fds = readdirSync(`/proc/${entry}/fd`).map((fd) => {
        try {
          return readlinkSync(`/proc/${entry}/fd/${fd}`);
        } catch {
          return "";
        }
      });
    } catch {
      continue;
    }
    if (!fds.some((target) => target.endsWith(`/${sandboxId}/guest.log`))) continue;
    const children = readFileSync(`/proc/${entry}/task/${entry}/children`, "utf8").trim();
    const init = children.split(/\s+/)[0];
    if (!init) return [];
    const dirs: string[] = [];
    for (const line of readFileSync(`/proc/${init}/cgroup`, "utf8").split("\n")) {
      const [, controllers, path] = line.split(":");
      if (path === undefined || path === "/") continue;
      const candidates = controllers
        ? [join("/sys/fs/cgroup", controllers, path)]
        : [join("/sys/fs/cgroup", path), join("/sys/fs/cgroup/unified", path)];
      for (const dir of candidates) if (existsSync(join(dir, "cgroup.procs"))) dirs.push(dir);
    }
    return dirs;
  }
  return [];
}

/** The SOCK freezer state of a sandbox: FROZEN or THAWED (v2: from cgroup.freeze). */
export function sockFreezerState(sandboxId: string): string | undefined {
  for (const cg of sockCgroupsOf(sandboxId)) {
    if (existsSync(join(cg, "freezer.state")))
      return readFileSync(join(cg, "freezer.state"), "utf8").trim();
    if (existsSync(join(cg, "cgroup.freeze")))
      return readFileSync(join(cg, "cgroup.freeze"), "utf8").trim() === "1" ? "FROZEN" : "THAWED";
  }
  return undefined;
}

/** The host pids of a SOCK sandbox's processes (its cgroup's members). */
export function sockSandboxPids(sandboxId: string): number[] {
  const [cg] = sockCgroupsOf(sandboxId);
  if (!cg) return [];
  return readFileSync(join(cg, "cgroup.procs"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(Number);
}

// --- docker ---------------------------------------------------------------------------------

function dockerApi(method: string, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { socketPath: DOCKER_SOCKET, path, method, headers: { host: "docker" }, timeout: 10_000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

async function containersByLabel(label: string): Promise<{ Id: string; State: string }[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
  const res = await dockerApi("GET", `/containers/json?all=1&filters=${filters}`);
  if (res.status !== 200) throw new Error(`docker: list containers: ${res.status} ${res.text}`);
  return JSON.parse(res.text);
}

/** Containers labelled with a worker id. */
export async function containersOf(workerId: string): Promise<string[]> {
  return (await containersByLabel(`org.openlambda.worker=${workerId}`)).map(
    (c) => `${c.Id.slice(0, 12)} (${c.State})`,
  );
}

// --- HTTP helpers --------------------------------------------------------------------------

async function statusReady(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/status`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200 && (await res.text()).trim() === "ready";
  } catch {
    return false;
  }
}

/**
 * A POST with node:http that reads the answer even when the server answers before it has read
 * the whole body (413 on an oversize upload) and then closes the connection.
 */
export function rawPost(
  url: string,
  body: Buffer,
  headers: Record<string, string>,
): Promise<{ status: number; text: string; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: "POST",
        headers: {
          "content-type": "application/gzip",
          "content-length": String(body.length),
          ...headers,
        },
        timeout: 60_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
        res.on("error", reject);
      },
    );
    let answered = false;
    req.once("response", () => {
      answered = true;
    });
    req.on("timeout", () => req.destroy(new Error("upload timed out")));
    // An early answer closes the connection while we still write: that error is not the
    // answer, which may still arrive; without one soon, it is the failure.
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE" && error.code !== "ECONNRESET") reject(error);
      else setTimeout(() => answered || reject(error), 3000).unref();
    });
    req.end(body);
  });
}

/** Resolves true when the child exits within `timeoutMs`, false otherwise. */
export function once(child: ChildProcess, timeoutMs = 60_000): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
