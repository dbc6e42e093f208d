import { describe, expect, it } from "vitest";
import { InvalidSpecError, SandboxCreateError } from "./errors.js";
import { UidAllocator } from "./uid-allocator.js";

describe("UidAllocator", () => {
  it("gives each live sandbox its own uid and reuses a released one as late as possible", () => {
    const uids = new UidAllocator({ first: 5000, count: 3 });
    const a = uids.take();
    const b = uids.take();
    expect([a, b]).toEqual([5000, 5001]);
    uids.release(a);
    // 5002 is still unused: the released 5000 waits its turn.
    expect(uids.take()).toBe(5002);
    expect(uids.take()).toBe(5000);
    expect(uids.inUse).toBe(3);
  });

  it("refuses when every uid is in use, and recovers once one is released", () => {
    const uids = new UidAllocator({ first: 7000, count: 2 });
    const taken = [uids.take(), uids.take()];
    expect(() => uids.take()).toThrow(SandboxCreateError);
    expect(() => uids.take()).toThrow(/7000\.\.7001/);
    uids.release(taken[1] as number);
    expect(uids.take()).toBe(7001);
  });

  it("never hands out a uid twice among live ones over many cycles", () => {
    const uids = new UidAllocator({ first: 100, count: 16 });
    const live = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      if (live.size < 16 && (i % 3 !== 0 || live.size === 0)) {
        const uid = uids.take();
        expect(live.has(uid)).toBe(false);
        expect(uid).toBeGreaterThanOrEqual(100);
        expect(uid).toBeLessThan(116);
        live.add(uid);
      } else {
        const [first] = live;
        live.delete(first as number);
        uids.release(first as number);
      }
    }
  });

  it.each([
    [{ first: 0, count: 10 }, /positive integers/],
    [{ first: 10, count: 0 }, /positive integers/],
    [{ first: 1.5, count: 10 }, /positive integers/],
    [{ first: 4_294_967_290, count: 10 }, /largest uid/],
  ])("refuses the range %j", (range, message) => {
    expect(() => new UidAllocator(range)).toThrow(InvalidSpecError);
    expect(() => new UidAllocator(range)).toThrow(message);
  });
});
