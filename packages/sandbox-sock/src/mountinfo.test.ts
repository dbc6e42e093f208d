import { describe, expect, it } from "vitest";
import { parseMountInfo } from "./mountinfo.js";

const SAMPLE = [
  "22 27 0:21 / /proc rw,relatime - proc proc rw",
  "30 29 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "31 29 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
  "40 29 0:30 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate",
  "50 27 8:1 /data /work/dir\\040with\\040space rw,relatime - ext4 /dev/vda rw",
].join("\n");

describe("parseMountInfo", () => {
  it("reads mount points, fs types and super options, with optional fields", () => {
    const m = parseMountInfo(SAMPLE);
    expect(m).toHaveLength(5);
    expect(m[1]).toMatchObject({ mountPoint: "/sys/fs/cgroup/memory", fsType: "cgroup" });
    expect(m[2]?.superOptions).toEqual(["rw", "cpu", "cpuacct"]);
    expect(m[3]).toMatchObject({ fsType: "cgroup2", mountPoint: "/sys/fs/cgroup/unified" });
  });

  it("unescapes octal escapes in paths", () => {
    expect(parseMountInfo(SAMPLE)[4]?.mountPoint).toBe("/work/dir with space");
  });

  it("skips malformed lines", () => {
    expect(parseMountInfo("garbage\n\n1 2 3")).toEqual([]);
  });
});
