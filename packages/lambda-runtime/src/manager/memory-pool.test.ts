import type { Sandbox } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { MemoryPool } from "./memory-pool.js";

/** Just the part of a sandbox a reservation watches: its death. */
function mortal(): { sandbox: Pick<Sandbox, "dead">; die: () => Promise<void> } {
  let resolve!: (reason: "crashed") => void;
  const dead = new Promise<"crashed">((r) => {
    resolve = r;
  });
  return {
    sandbox: { dead },
    die: async () => {
      resolve("crashed");
      await dead;
      await Promise.resolve();
    },
  };
}

describe("MemoryPool reservations", () => {
  it("release gives the memory back exactly once", async () => {
    const pool = new MemoryPool(512, () => {});
    const a = await pool.acquire(128);
    await pool.acquire(128);
    expect(pool.usedMb).toBe(256);
    a.release();
    a.release();
    expect(a.released).toBe(true);
    expect(pool.usedMb).toBe(128);
  });

  it("a bound reservation is released by its sandbox's death, and only once with a release too", async () => {
    const pool = new MemoryPool(512, () => {});
    const r = await pool.acquire(128);
    const { sandbox, die } = mortal();
    r.bindTo(sandbox);
    expect(pool.usedMb).toBe(128);
    await die();
    expect(pool.usedMb).toBe(0);
    r.release();
    expect(pool.usedMb).toBe(0);
  });

  it("a hand-over moves the memory: the old handle and its binding free nothing", async () => {
    const pool = new MemoryPool(512, () => {});
    const old = await pool.acquire(128);
    const first = mortal();
    old.bindTo(first.sandbox);
    const moved = old.handOver();
    expect(old.released).toBe(true);
    await first.die();
    old.release();
    expect(pool.usedMb).toBe(128);
    moved.release();
    expect(pool.usedMb).toBe(0);
    expect(() => old.handOver()).toThrow(/released/);
  });

  it("a release wakes a waiter", async () => {
    const pool = new MemoryPool(128, () => {});
    const r = await pool.acquire(128);
    const next = pool.acquire(128);
    expect(pool.waiting).toBe(1);
    r.release();
    await next;
    expect(pool.usedMb).toBe(128);
  });
});
