import { silentLogger } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { CpuGroups } from "./cpu-groups.js";
import type { CgroupDriver, SandboxCgroup } from "./driver.js";

/** A driver and cgroups that only record what they are asked, in order. */
function recorder(failMake = 0) {
  const calls: string[] = [];
  let fails = failMake;
  const driver = {
    makeGroup: async (name: string) => {
      if (fails-- > 0) throw new Error("mkdir said no");
      calls.push(`make ${name}`);
    },
    setGroupCpuPercent: async (name: string, p: number) => void calls.push(`group ${name} ${p}`),
    removeGroup: async (name: string) => void calls.push(`remove ${name}`),
  } as unknown as CgroupDriver;
  const cgroup = (name: string) =>
    ({
      name,
      setCpuPercent: async (p: number) => void calls.push(`sandbox ${name} ${p}`),
    }) as unknown as SandboxCgroup;
  return { calls, groups: new CpuGroups(driver, silentLogger), cgroup };
}

describe("CpuGroups", () => {
  it("makes a group with its first sandbox, keeps it while one holds it, removes it with the last", async () => {
    const { calls, groups, cgroup } = recorder();
    const a = await groups.hold({ name: "f", cpuPercent: 100 });
    await a.track(cgroup("a"), 50);
    const b = await groups.hold({ name: "f", cpuPercent: 100 });
    await b.track(cgroup("b"), 200);
    await a.release();
    await a.release();
    expect(calls).toEqual(["make f", "group f 100", "sandbox a 50", "sandbox b 100"]);
    await b.release();
    expect(calls.at(-1)).toBe("remove f");
    // Made again for the next sandbox.
    const c = await groups.hold({ name: "f", cpuPercent: 100 });
    expect(calls.slice(-2)).toEqual(["make f", "group f 100"]);
    await c.release();
  });

  it("lowers its sandboxes' quotas before the group's, and raises the group's first", async () => {
    const { calls, groups, cgroup } = recorder();
    const a = await groups.hold({ name: "f", cpuPercent: 200 });
    await a.track(cgroup("a"), 150);
    calls.length = 0;
    const b = await groups.hold({ name: "f", cpuPercent: 100 });
    expect(calls).toEqual(["sandbox a 100", "group f 100"]);
    calls.length = 0;
    const c = await groups.hold({ name: "f", cpuPercent: 300 });
    expect(calls).toEqual(["group f 300", "sandbox a 150"]);
    await Promise.all([a.release(), b.release(), c.release()]);
  });

  it("runs a last release and a new hold of one group in turn: the group exists afterwards", async () => {
    const { calls, groups } = recorder();
    const a = await groups.hold({ name: "f", cpuPercent: 100 });
    const [, b] = await Promise.all([a.release(), groups.hold({ name: "f", cpuPercent: 100 })]);
    // The hold counted before the release ran: nothing was removed.
    expect(calls).toEqual(["make f", "group f 100"]);
    await b.release();
    expect(calls).toEqual(["make f", "group f 100", "remove f"]);
  });

  it("gives up a hold whose group could not be made, and tries again for the next", async () => {
    const { calls, groups } = recorder(1);
    await expect(groups.hold({ name: "f", cpuPercent: 100 })).rejects.toThrow(/mkdir said no/);
    const a = await groups.hold({ name: "f", cpuPercent: 100 });
    expect(calls).toEqual(["make f", "group f 100"]);
    await a.release();
    expect(calls.at(-1)).toBe("remove f");
  });
});
