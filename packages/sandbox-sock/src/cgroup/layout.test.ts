import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { MountEntry } from "../mountinfo.js";
import { detectCgroupLayout } from "./layout.js";

const mount = (mountPoint: string, fsType: string, opts: string[] = ["rw"]): MountEntry => ({
  id: 1,
  parentId: 0,
  mountPoint,
  fsType,
  source: fsType,
  superOptions: opts,
});

const v1 = [
  mount("/sys/fs/cgroup/memory", "cgroup", ["rw", "memory"]),
  mount("/sys/fs/cgroup/cpu,cpuacct", "cgroup", ["rw", "cpu", "cpuacct"]),
  mount("/sys/fs/cgroup/pids", "cgroup", ["rw", "pids"]),
  mount("/sys/fs/cgroup/freezer", "cgroup", ["rw", "freezer"]),
];

describe("detectCgroupLayout", () => {
  const dir = mkdtempSync(join(tmpdir(), "ol-sock-layout-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("picks v1 when every controller is mounted, sharing co-mounted hierarchies", () => {
    const r = detectCgroupLayout(v1);
    expect(r).toEqual({
      ok: true,
      layout: {
        version: 1,
        mounts: {
          memory: "/sys/fs/cgroup/memory",
          cpu: "/sys/fs/cgroup/cpu,cpuacct",
          cpuacct: "/sys/fs/cgroup/cpu,cpuacct",
          pids: "/sys/fs/cgroup/pids",
          freezer: "/sys/fs/cgroup/freezer",
        },
      },
    });
  });

  it("prefers a complete v1 over an empty v2 (hybrid hosts)", () => {
    const r = detectCgroupLayout([...v1, mount(join(dir, "nothing"), "cgroup2")]);
    expect(r.ok && r.layout.version).toBe(1);
  });

  it("picks v2 when its root offers memory, cpu and pids", () => {
    writeFileSync(join(dir, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
    writeFileSync(join(dir, "cgroup.procs"), "");
    expect(detectCgroupLayout([mount(dir, "cgroup2")])).toEqual({
      ok: true,
      layout: { version: 2, mount: dir },
    });
  });

  it("says what is missing", () => {
    const empty = mkdtempSync(join(tmpdir(), "ol-sock-layout-empty-"));
    try {
      writeFileSync(join(empty, "cgroup.controllers"), "cpu\n");
      const r = detectCgroupLayout([mount(empty, "cgroup2")]);
      expect(r).toMatchObject({ ok: false });
      expect(!r.ok && r.missing).toMatch(/lacks the memory, pids controller/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    const partial = detectCgroupLayout(v1.slice(0, 2));
    expect(!partial.ok && partial.missing).toMatch(/pids, freezer not mounted/);
    expect(detectCgroupLayout([])).toEqual({
      ok: false,
      missing: "no cgroup filesystem is mounted (neither v1 nor v2)",
    });
  });
});
