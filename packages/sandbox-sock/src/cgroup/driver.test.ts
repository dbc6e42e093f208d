import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cgroupDriver, cpuQuotaUs } from "./driver.js";

/**
 * The file protocol of both cgroup versions against a fake tree. This host mounts v1; its v2
 * hierarchy has no controllers, so the v2 code path is proven here, with a tiny "kernel"
 * (timers that answer the way cgroupfs does).
 */
let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "ol-sock-fake-cg-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const read = (...p: string[]) => readFileSync(join(root, ...p), "utf8");
const put = (value: string, ...p: string[]) => writeFileSync(join(root, ...p), value);

describe("cgroup v2 file protocol", () => {
  const make = async () => {
    put("cpu memory pids\n", "cgroup.controllers");
    const driver = cgroupDriver({ version: 2, mount: root }, "openlambda/ol-test");
    await driver.prepare();
    const cg = await driver.create("sb-1");
    // What the kernel would show in a fresh v2 cgroup.
    for (const [f, v] of Object.entries({
      "memory.max": "max",
      "memory.swap.max": "max",
      "memory.current": "1048576",
      "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
      "cpu.stat": "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
      "pids.current": "3",
      "cgroup.events": "populated 1\nfrozen 0\n",
      "cgroup.freeze": "0",
      "cgroup.procs": "101\n102\n",
      "cgroup.kill": "",
    })) {
      put(v, "openlambda/ol-test/sb-1", f);
    }
    return { driver, cg };
  };

  it("enables memory, cpu and pids at every level down to the worker's parent", async () => {
    const { driver } = await make();
    expect(read("cgroup.subtree_control")).toBe("+memory +cpu +pids");
    expect(read("openlambda/cgroup.subtree_control")).toBe("+memory +cpu +pids");
    expect(read("openlambda/ol-test/cgroup.subtree_control")).toBe("+memory +cpu +pids");
    expect(driver.parentDirs).toEqual([join(root, "openlambda/ol-test")]);
    expect(await driver.children()).toEqual(["sb-1"]);
  });

  it("writes memory.max, memory.swap.max 0, cpu.max and pids.max", async () => {
    const { cg } = await make();
    await cg.setLimits({ memoryBytes: 64 * 1024 * 1024, cpuPercent: 50, procs: 10 });
    const dir = "openlambda/ol-test/sb-1";
    expect(read(dir, "memory.max")).toBe(String(64 * 1024 * 1024));
    expect(read(dir, "memory.swap.max")).toBe("0");
    expect(read(dir, "cpu.max")).toBe("50000 100000");
    expect(read(dir, "pids.max")).toBe("10");
    expect(cg.procsFiles).toEqual([join(root, dir, "cgroup.procs")]);
  });

  it("freezes via cgroup.freeze and waits for cgroup.events to say frozen 1", async () => {
    const { cg } = await make();
    const dir = "openlambda/ol-test/sb-1";
    let settled = false;
    const freezing = cg.freeze(2000).then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(read(dir, "cgroup.freeze")).toBe("1");
    expect(settled).toBe(false);
    expect(await cg.freezerState()).toBe("freezing");
    put("populated 1\nfrozen 1\n", dir, "cgroup.events");
    await freezing;
    expect(await cg.freezerState()).toBe("frozen");
    const thawing = cg.thaw(2000);
    await new Promise((r) => setTimeout(r, 20));
    expect(read(dir, "cgroup.freeze")).toBe("0");
    put("populated 1\nfrozen 0\n", dir, "cgroup.events");
    await thawing;
    expect(await cg.freezerState()).toBe("thawed");
  });

  it("gives up freezing after the timeout", async () => {
    const { cg } = await make();
    await expect(cg.freeze(50)).rejects.toThrow(/freeze cgroup sb-1: not done after 50 ms/);
  });

  it("kills through cgroup.kill and waits until cgroup.procs is empty", async () => {
    const { cg } = await make();
    const dir = "openlambda/ol-test/sb-1";
    // The fake pids do not exist on this host; the kernel would empty the file.
    setTimeout(() => put("", dir, "cgroup.procs"), 30);
    await cg.killAll(2000);
    expect(read(dir, "cgroup.kill")).toBe("1");
    expect(await cg.pids()).toEqual([]);
  });

  it("reads oom_kill from memory.events and stats from memory.current, cpu.stat, pids.current", async () => {
    const { cg } = await make();
    expect(await cg.oomKills()).toBe(0);
    put("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n", "openlambda/ol-test/sb-1", "memory.events");
    expect(await cg.oomKills()).toBe(1);
    expect(await cg.stats()).toEqual({
      memoryBytes: 1048576,
      memoryLimitBytes: Number.POSITIVE_INFINITY,
      cpuUsageUs: 1234,
      pids: 3,
    });
  });

  it("removes its directory", async () => {
    const { cg, driver } = await make();
    // A real cgroupfs directory has only virtual files; the fake's files must go first.
    rmSync(join(root, "openlambda/ol-test/sb-1"), { recursive: true });
    mkdirSync(join(root, "openlambda/ol-test/sb-1"));
    await cg.remove();
    expect(existsSync(join(root, "openlambda/ol-test/sb-1"))).toBe(false);
    expect(await driver.children()).toEqual([]);
  });
});

describe("cgroup v1 file protocol", () => {
  const mounts = () => ({
    memory: join(root, "memory"),
    cpu: join(root, "cpu,cpuacct"),
    cpuacct: join(root, "cpu,cpuacct"),
    pids: join(root, "pids"),
    freezer: join(root, "freezer"),
  });
  const make = async () => {
    const driver = cgroupDriver({ version: 1, mounts: mounts() }, "ol-test");
    await driver.prepare();
    const cg = await driver.create("sb-1");
    const unlimited = "9223372036854771712";
    put(unlimited, "memory/ol-test/sb-1/memory.limit_in_bytes");
    put(unlimited, "memory/ol-test/sb-1/memory.memsw.limit_in_bytes");
    put("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", "memory/ol-test/sb-1/memory.oom_control");
    put("THAWED", "freezer/ol-test/sb-1/freezer.state");
    return { driver, cg };
  };

  it("makes one directory per hierarchy, sharing co-mounted cpu,cpuacct", async () => {
    const { driver, cg } = await make();
    expect(driver.parentDirs).toHaveLength(4);
    expect(cg.procsFiles).toHaveLength(4);
  });

  it("sets memory and memsw (so swap is no escape), cfs quota and pids.max", async () => {
    const { cg } = await make();
    await cg.setLimits({ memoryBytes: 128 * 1024 * 1024, cpuPercent: 150, procs: 16 });
    expect(read("memory/ol-test/sb-1/memory.limit_in_bytes")).toBe(String(128 * 1024 * 1024));
    expect(read("memory/ol-test/sb-1/memory.memsw.limit_in_bytes")).toBe(String(128 * 1024 * 1024));
    expect(read("cpu,cpuacct/ol-test/sb-1/cpu.cfs_quota_us")).toBe("150000");
    expect(read("cpu,cpuacct/ol-test/sb-1/cpu.cfs_period_us")).toBe("100000");
    expect(read("pids/ol-test/sb-1/pids.max")).toBe("16");
    expect(await cg.memoryLimit()).toBe(128 * 1024 * 1024);
    await cg.setMemoryLimit(256 * 1024 * 1024);
    expect(read("memory/ol-test/sb-1/memory.memsw.limit_in_bytes")).toBe(String(256 * 1024 * 1024));
  });

  it("freezes by writing FROZEN and polling freezer.state", async () => {
    const { cg } = await make();
    const p = cg.freeze(2000);
    await new Promise((r) => setTimeout(r, 20));
    // Written FROZEN, read back FROZEN: what the kernel shows once every task is frozen.
    expect(read("freezer/ol-test/sb-1/freezer.state")).toBe("FROZEN");
    await p;
    expect(await cg.freezerState()).toBe("frozen");
    await cg.thaw(2000);
    expect(await cg.freezerState()).toBe("thawed");
  });

  it("reads oom_kill from memory.oom_control", async () => {
    const { cg } = await make();
    put("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "memory/ol-test/sb-1/memory.oom_control");
    expect(await cg.oomKills()).toBe(2);
  });
});

describe("CPU groups, cgroup v2 file protocol", () => {
  const make = async () => {
    put("cpu memory pids\n", "cgroup.controllers");
    const driver = cgroupDriver({ version: 2, mount: root }, "ol-test");
    await driver.prepare();
    return driver;
  };

  it("makes grp-NAME with the controllers enabled below it, the default weight and the group's cpu.max", async () => {
    const driver = await make();
    await driver.makeGroup("lam");
    await driver.setGroupCpuPercent("lam", 150);
    expect(read("ol-test/grp-lam/cgroup.subtree_control")).toBe("+memory +cpu +pids");
    expect(read("ol-test/grp-lam/cpu.weight")).toBe("100");
    expect(read("ol-test/grp-lam/cpu.max")).toBe("150000 100000");
    // Made again over a leftover of an earlier worker: taken over, not refused.
    await driver.makeGroup("lam");
  });

  it("makes a grouped sandbox's whole cgroup under its group, its own cpu.max apart", async () => {
    const driver = await make();
    await driver.makeGroup("lam");
    const cg = await driver.createInGroup("lam", "sb-1", undefined);
    expect(cg.procsFiles).toEqual([join(root, "ol-test/grp-lam/sb-1/cgroup.procs")]);
    await cg.setLimits({ memoryBytes: 1 << 26, procs: 8 });
    expect(existsSync(join(root, "ol-test/grp-lam/sb-1/cpu.max"))).toBe(false);
    expect(read("ol-test/grp-lam/sb-1/memory.max")).toBe(String(1 << 26));
    await cg.setCpuPercent(40);
    expect(read("ol-test/grp-lam/sb-1/cpu.max")).toBe("40000 100000");
  });

  it("removes the group, refuses a pooled cgroup and cannot move a live sandbox in", async () => {
    const driver = await make();
    await driver.makeGroup("lam");
    rmSync(join(root, "ol-test/grp-lam"), { recursive: true });
    mkdirSync(join(root, "ol-test/grp-lam"));
    await driver.removeGroup("lam");
    expect(existsSync(join(root, "ol-test/grp-lam"))).toBe(false);
    await driver.removeGroup("lam");
    const pooled = await driver.create("sb-2");
    await expect(driver.createInGroup("lam", "sb-3", pooled)).rejects.toThrow(/made whole/);
    expect(driver.canJoinGroup).toBe(false);
    await expect(driver.joinGroup(pooled, "lam", false)).rejects.toThrow(/cannot move/);
  });
});

describe("CPU groups, cgroup v1 file protocol", () => {
  const mounts = () => ({
    memory: join(root, "memory"),
    cpu: join(root, "cpu,cpuacct"),
    cpuacct: join(root, "cpu,cpuacct"),
    pids: join(root, "pids"),
    freezer: join(root, "freezer"),
  });

  it("makes grp-NAME in the cpu hierarchy only, with cpu.shares 1024 and the group's CFS quota", async () => {
    const driver = cgroupDriver({ version: 1, mounts: mounts() }, "ol-test");
    await driver.prepare();
    await driver.makeGroup("lam");
    await driver.setGroupCpuPercent("lam", 50);
    expect(read("cpu,cpuacct/ol-test/grp-lam/cpu.shares")).toBe("1024");
    expect(read("cpu,cpuacct/ol-test/grp-lam/cpu.cfs_quota_us")).toBe("50000");
    expect(read("cpu,cpuacct/ol-test/grp-lam/cpu.cfs_period_us")).toBe("100000");
    for (const h of ["memory", "pids", "freezer"])
      expect(existsSync(join(root, h, "ol-test/grp-lam"))).toBe(false);
    expect(driver.canJoinGroup).toBe(true);
  });

  it("keeps a grouped sandbox's memory, pids and freezer in its pooled cgroup, moves cpu and cpuacct under the group, and removes all of it", async () => {
    const driver = cgroupDriver({ version: 1, mounts: mounts() }, "ol-test");
    await driver.prepare();
    await driver.makeGroup("lam");
    const pooled = await driver.create("sb-1");
    const cg = await driver.createInGroup("lam", "sb-1", pooled);
    expect([...cg.procsFiles].sort()).toEqual(
      [
        "cpu,cpuacct/ol-test/grp-lam/sb-1",
        "freezer/ol-test/sb-1",
        "memory/ol-test/sb-1",
        "pids/ol-test/sb-1",
      ].map((d) => join(root, d, "cgroup.procs")),
    );
    await cg.setCpuPercent(30);
    expect(read("cpu,cpuacct/ol-test/grp-lam/sb-1/cpu.cfs_quota_us")).toBe("30000");
    put("5000000", "cpu,cpuacct/ol-test/grp-lam/sb-1/cpuacct.usage");
    put("4096", "memory/ol-test/sb-1/memory.usage_in_bytes");
    put("8192", "memory/ol-test/sb-1/memory.limit_in_bytes");
    put("2", "pids/ol-test/sb-1/pids.current");
    expect((await cg.stats()).cpuUsageUs).toBe(5000);
    // A real cgroupfs directory has only virtual files; the fake's files must go first.
    for (const d of [
      "cpu,cpuacct/ol-test/grp-lam/sb-1",
      "memory/ol-test/sb-1",
      "pids/ol-test/sb-1",
    ]) {
      rmSync(join(root, d), { recursive: true });
      mkdirSync(join(root, d));
    }
    await cg.remove();
    for (const h of ["cpu,cpuacct", "memory", "pids", "freezer"])
      expect(existsSync(join(root, h, "ol-test/sb-1"))).toBe(false);
    expect(existsSync(join(root, "cpu,cpuacct/ol-test/grp-lam/sb-1"))).toBe(false);
    rmSync(join(root, "cpu,cpuacct/ol-test/grp-lam"), { recursive: true });
    mkdirSync(join(root, "cpu,cpuacct/ol-test/grp-lam"));
    await driver.removeGroup("lam");
    expect(existsSync(join(root, "cpu,cpuacct/ol-test/grp-lam"))).toBe(false);
  });
});

describe("cpuQuotaUs", () => {
  it("maps percent of one core to a CFS quota per 100 ms period, at least 1 ms", () => {
    expect(cpuQuotaUs(100)).toBe(100_000);
    expect(cpuQuotaUs(25)).toBe(25_000);
    expect(cpuQuotaUs(200)).toBe(200_000);
    expect(cpuQuotaUs(0.1)).toBe(1000);
  });
});
