import { silentLogger } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import type { CgroupDriver, SandboxCgroup } from "./driver.js";
import { CgroupPool } from "./pool.js";

function fakeDriver() {
  const made: string[] = [];
  const removed: string[] = [];
  const existing = new Set(["sb-x-0"]);
  const driver = {
    version: 2,
    parentDirs: [],
    prepare: async () => {},
    create: async (name: string) => {
      if (existing.has(name)) throw Object.assign(new Error("exists"), { code: "EEXIST" });
      made.push(name);
      return { name, remove: async () => void removed.push(name) } as unknown as SandboxCgroup;
    },
    open: () => {
      throw new Error("unused");
    },
    children: async () => [],
    removeParent: async () => {},
  } satisfies Partial<CgroupDriver>;
  return { driver, made, removed };
}

describe("CgroupPool", () => {
  it("pre-makes cgroups, skips names that exist, refills after a take, drains", async () => {
    const { driver, made, removed } = fakeDriver();
    const pool = new CgroupPool(driver, 2, "sb-x-", silentLogger);
    await pool.refill();
    expect(made).toEqual(["sb-x-1", "sb-x-2"]);
    const cg = await pool.take();
    expect(cg.name).toBe("sb-x-1");
    await pool.refill();
    expect(pool.available).toBe(2);
    await pool.drain();
    expect(removed).toEqual(["sb-x-2", "sb-x-3"]);
    expect(pool.available).toBe(0);
  });

  it("makes one on the spot when empty", async () => {
    const { driver } = fakeDriver();
    const pool = new CgroupPool(driver, 0, "p-", silentLogger);
    expect((await pool.take()).name).toBe("p-0");
  });
});
