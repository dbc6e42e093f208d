import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cgroupDriver } from "../src/cgroup/driver.js";
import { V2_CONTROLLERS } from "../src/cgroup/layout.js";
import { readMountInfo } from "../src/mountinfo.js";

/**
 * The v2 driver against the host's real v2 hierarchy, where it has the controllers. On a v1 or
 * hybrid host whose v2 tree is empty (like the machine this was written on) this is the one
 * check that skips; the v2 file protocol is then covered by src/cgroup/driver.test.ts.
 */
const v2 = readMountInfo().find((m) => m.fsType === "cgroup2")?.mountPoint;
const controllers =
  v2 && existsSync(join(v2, "cgroup.controllers"))
    ? readFileSync(join(v2, "cgroup.controllers"), "utf8").trim().split(/\s+/)
    : [];
const usable = v2 !== undefined && V2_CONTROLLERS.every((c) => controllers.includes(c));
const why = v2
  ? `the cgroup v2 hierarchy at ${v2} has no ${V2_CONTROLLERS.filter((c) => !controllers.includes(c)).join(", ")} controller (they are bound to v1 here)`
  : "no cgroup v2 hierarchy is mounted";

describe.skipIf(!usable || process.getuid?.() !== 0)(
  `cgroup v2 on this host${usable ? "" : ` [skipped: ${why}]`}`,
  () => {
    it("creates, limits, freezes, thaws and removes a real v2 cgroup", async () => {
      const driver = cgroupDriver({ version: 2, mount: v2 as string }, `ol-v2test-${process.pid}`);
      await driver.prepare();
      const cg = await driver.create("sb-0");
      try {
        await cg.setLimits({ memoryBytes: 64 * 1024 * 1024, cpuPercent: 50, procs: 8 });
        expect(await cg.memoryLimit()).toBe(64 * 1024 * 1024);
        await cg.freeze(2000);
        expect(await cg.freezerState()).toBe("frozen");
        await cg.thaw(2000);
        expect(await cg.freezerState()).toBe("thawed");
        await cg.killAll(2000);
      } finally {
        await cg.remove();
        await driver.removeParent();
      }
    });
  },
);
