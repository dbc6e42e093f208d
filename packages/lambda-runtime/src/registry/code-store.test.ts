import { describe, expect, it } from "vitest";
import { DEFAULT_LAMBDA_CONFIG } from "../lambda-config.js";
import { CodeStore, type CodeStoreEvent } from "./code-store.js";
import type { LambdaCode } from "./directory-registry.js";

const code = (name: string, version: string): LambdaCode => ({
  name,
  version,
  dir: `/nowhere/${name}/${version}`,
  config: DEFAULT_LAMBDA_CONFIG,
});

function store() {
  const removed: string[] = [];
  const events: CodeStoreEvent[] = [];
  const s = new CodeStore(async (c) => {
    removed.push(c.dir);
  });
  s.on((e) => events.push(e));
  return { s, removed, events };
}

describe("CodeStore", () => {
  it("removes a version only once it is neither current nor held", async () => {
    const { s, removed } = store();
    const v1 = code("app", "v1");
    const adopted = s.adopt(v1, true);
    s.setCurrent("app", v1);
    adopted.release();
    const call = s.tryHold(v1);
    const instance = call?.retain();
    expect(call?.current).toBe(true);

    const v2 = code("app", "v2");
    s.adopt(v2, true);
    s.setCurrent("app", v2);
    expect(call?.current).toBe(false);
    call?.release();
    call?.release(); // a second release must not count twice
    await s.settled();
    expect(removed).toEqual([]);
    instance?.release();
    await s.settled();
    expect(removed).toEqual([v1.dir]);
    expect(s.tryHold(v1)).toBeUndefined();
    expect(s.find("app", "v1")).toBeUndefined();
    expect(s.find("app", "v2")).toBe(v2);
  });

  it("removes the current version on delete once its last hold goes, and tells listeners", async () => {
    const { s, removed, events } = store();
    const v1 = code("app", "v1");
    const hold = s.adopt(v1, true);
    s.setCurrent("app", v1);
    s.setCurrent("app", undefined);
    expect(hold.current).toBe(false);
    expect(removed).toEqual([]);
    hold.release();
    await s.settled();
    expect(removed).toEqual([v1.dir]);
    expect(events).toEqual([
      { type: "current", name: "app" },
      { type: "current", name: "app" },
      { type: "removed", code: v1 },
    ]);
  });

  it("never removes a directory it does not own, and refuses misuse", async () => {
    const { s, removed, events } = store();
    const plain = code("plain", "p1");
    s.adopt(plain, false).release();
    await s.settled();
    expect(removed).toEqual([]);
    expect(events).toEqual([{ type: "removed", code: plain }]);

    const v1 = code("app", "v1");
    const hold = s.adopt(v1, true);
    expect(() => s.adopt(code("app", "v1"), true)).toThrow(/already live/);
    hold.release();
    expect(() => hold.retain()).toThrow(/released/);
    expect(() => s.setCurrent("app", v1)).toThrow(/not live/);
    expect(s.tryHold(code("app", "never-seen"))).toBeUndefined();
  });

  it("a removal that fails does not reject anywhere", async () => {
    const s = new CodeStore(() => Promise.reject(new Error("EBUSY")));
    s.adopt(code("app", "v1"), true).release();
    await expect(s.settled()).resolves.toBeUndefined();
  });
});
