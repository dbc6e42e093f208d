import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, readFileSync } from "node:fs";
import { mkdir, rm, rmdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { silentLogger } from "@openlambda/sandbox-core";
import { afterEach, describe, expect, it } from "vitest";
import { detectCgroupLayout } from "../src/cgroup/layout.js";
import { locateHelper } from "../src/helper-binary.js";
import { readMountInfo } from "../src/mountinfo.js";
import { locateReaper, type Reaper, startReaper } from "../src/reaper.js";
import { whatIsMissing } from "./support.js";

/** One hierarchy to make test cgroups in: v1's freezer (a task may sit in it alone) or v2. */
function hierarchy(): string {
  const found = detectCgroupLayout(readMountInfo());
  if (!found.ok) throw new Error(found.missing);
  return found.layout.version === 1 ? found.layout.mounts.freezer : found.layout.mount;
}

function stat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}
const isLink = (path: string) => {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
};
const isAlive = (pid: number) => (stat(pid)?.[0] ?? "Z") !== "Z";

/** Runs the reaper with a raw header; its status and whether it said it was ready. */
function runReaper(
  tag: string,
  header: string,
  extra: readonly string[] = [],
): Promise<{ status: number | null; out: string }> {
  const child = spawn(locateReaper(locateHelper()), ["--tag", tag, ...extra], {
    stdio: ["pipe", "pipe", "ignore"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  // A reaper that refuses its arguments exits before it reads: the header then meets EPIPE.
  child.stdin.on("error", () => {});
  child.stdin.end(header);
  return new Promise((resolve) => child.once("exit", (status) => resolve({ status, out })));
}

describe.skipIf(whatIsMissing())("sock reaper", () => {
  const made: string[] = [];
  const started: ChildProcess[] = [];
  const reapers: Reaper[] = [];
  afterEach(async () => {
    for (const reaper of reapers.splice(0)) await reaper.close();
    for (const child of started.splice(0)) child.kill("SIGKILL");
    for (const dir of made.splice(0).reverse()) {
      for (let i = 0; i < 100 && existsSync(dir); i++) {
        await rmdir(dir).catch(() => new Promise((r) => setTimeout(r, 20)));
      }
    }
  });

  /** A fresh `<hierarchy>/<tag>` parent made by this test. */
  async function parent(): Promise<{ tag: string; dir: string }> {
    const tag = `ol-test${randomBytes(4).toString("hex")}`;
    const dir = join(hierarchy(), tag);
    await mkdir(dir);
    made.push(dir);
    return { tag, dir };
  }

  /** A cgroup under `dir` holding a `sleep` this test started. */
  async function occupied(dir: string, name: string): Promise<{ cgroup: string; pid: number }> {
    const cgroup = join(dir, name);
    await mkdir(cgroup);
    made.push(cgroup);
    const child = spawn("sleep", ["300"], { stdio: "ignore" });
    started.push(child);
    await writeFile(join(cgroup, "cgroup.procs"), String(child.pid));
    return { cgroup, pid: child.pid as number };
  }

  it("refuses parents outside its tag's cgroup dirs and touches nothing", async () => {
    const { tag, dir } = await parent();
    const bad = [
      "/tmp", // not under /sys/fs/cgroup
      `${dir}/../${tag}`, // a .. component
      `${hierarchy()}//${tag}`, // an empty component
      `${dir}/`, // trailing slash
      hierarchy(), // a hierarchy's root
      join(hierarchy(), `${tag}x`), // not the tag (and not there)
    ];
    for (const path of bad) {
      expect(await runReaper(tag, `sb-a-\0${path}\0\0`), path).toEqual({ status: 2, out: "" });
    }
    // A bad prefix, no parent, a header cut short.
    for (const header of [`sb/../\0${dir}\0\0`, "sb-a-\0\0", `sb-a-\0${dir}\0`]) {
      expect(await runReaper(tag, header)).toEqual({ status: 2, out: "" });
    }
    expect(await runReaper(tag, `sb-a-\0${dir}\0\0`)).toEqual({ status: 0, out: "ready\n" });
  });

  it("refuses a bad --mounts-under or --netns-prefix and touches nothing", async () => {
    const { tag, dir } = await parent();
    const header = `sb-a-\0${dir}\0\0`;
    for (const extra of [
      ["--mounts-under", "relative/dir"],
      ["--mounts-under", "/tmp/../etc"],
      ["--mounts-under", "/tmp//x"],
      ["--mounts-under", "/tmp/x/"],
      ["--netns-prefix", "ol-other-n"], // not this worker's tag
      ["--netns-prefix", tag], // the tag alone would match more than its namespaces
      ["--netns-prefix", `${tag}-n/x`],
      ["--mounts-under"], // no value
      ["--colour", "red"],
    ]) {
      expect(await runReaper(tag, header, extra), extra.join(" ")).toEqual({ status: 2, out: "" });
    }
    expect(await runReaper(tag, header, ["--netns-prefix", `${tag}-n`])).toEqual({
      status: 0,
      out: "ready\n",
    });
  });

  it("on EOF deletes only its tag's namespaces and address claims", async () => {
    const { tag, dir } = await parent();
    const other = `ol-test${randomBytes(4).toString("hex")}`;
    // Files that stand where the egress network's would, made by this test only.
    await mkdir("/run/netns", { recursive: true });
    await mkdir("/run/ol-egress", { recursive: true });
    const mine = `/run/netns/${tag}-n0001`;
    const theirs = `/run/netns/${other}-n0001`;
    const claims = [900_001, 900_002].map((n) => `/run/ol-egress/${n}`);
    await writeFile(mine, "");
    await writeFile(theirs, "");
    await symlink(tag, claims[0] as string);
    await symlink(other, claims[1] as string);
    try {
      const result = await runReaper(tag, `sb-a-\0${dir}\0\0`, ["--netns-prefix", `${tag}-n`]);
      expect(result).toEqual({ status: 0, out: "ready\n" });
      expect([mine, theirs, ...claims].map((p) => existsSync(p) || isLink(p))).toEqual([
        false,
        true,
        false,
        true,
      ]);
    } finally {
      for (const p of [mine, theirs, ...claims]) await rm(p, { force: true });
    }
  });

  it("outlives signals, sits in its own session, and on EOF ends only its prefix's cgroups", async () => {
    const { tag, dir } = await parent();
    const mine = await occupied(dir, "sb-mine-0");
    const theirs = await occupied(dir, "sb-theirs-0");
    // One level down, as in a CPU group: the group is not the reaper's, its sandbox is.
    const group = join(dir, "grp-x");
    await mkdir(group);
    made.push(group);
    const grouped = await occupied(group, "sb-mine-1");
    // Frozen, as a paused sandbox is: its kill must still land.
    const freezer = existsSync(join(mine.cgroup, "freezer.state"))
      ? ["freezer.state", "FROZEN"]
      : ["cgroup.freeze", "1"];
    await writeFile(join(mine.cgroup, freezer[0] as string), freezer[1] as string);

    const reaper = await startReaper({
      path: locateReaper(locateHelper()),
      tag,
      prefix: "sb-mine-",
      parents: [dir],
      log: silentLogger,
    });
    reapers.push(reaper);
    expect(stat(reaper.pid)?.[3]).toBe(String(reaper.pid)); // session id: its own
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.kill(reaper.pid, signal);
    await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(reaper.pid)).toBe(true);
    expect(isAlive(mine.pid)).toBe(true);

    await reaper.close();
    expect(isAlive(reaper.pid)).toBe(false);
    await expect.poll(() => isAlive(mine.pid), { timeout: 2000 }).toBe(false);
    expect(existsSync(mine.cgroup)).toBe(false);
    expect(isAlive(grouped.pid)).toBe(false);
    expect(existsSync(grouped.cgroup)).toBe(false);
    expect(existsSync(group)).toBe(true);
    expect(isAlive(theirs.pid)).toBe(true);
    expect(existsSync(theirs.cgroup)).toBe(true);
  });
});
