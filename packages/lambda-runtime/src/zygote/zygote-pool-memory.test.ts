import { createServer } from "node:http";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DEFAULT_LIMITS,
  type FakeGuestFactory,
  fakeBackend,
  type Sandbox,
  type SandboxBackend,
  type SandboxSpec,
} from "@openlambda/sandbox-core";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryPool } from "../manager/memory-pool.js";
import { Timers } from "../manager/timers.js";
import type { NodeDepsInstaller } from "../prepare/node-deps.js";
import type { LambdaCode } from "../registry/directory-registry.js";
import { tempDir, writeTree } from "../testing/fixtures.js";
import { parseTree } from "./tree.js";
import { ZygotePool } from "./zygote-pool.js";

const MB = DEFAULT_LIMITS.memoryMb;

/** Who holds memory is checked against what is alive: the pool's count must follow the backend. */
describe("ZygotePool memory reservations", () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let failLoad: boolean;

  /**
   * A guest that answers the zygote protocol without running Node code: `/_ol/load` answers 404
   * while `failLoad` is set, as a runtime that cannot load the lambda does.
   */
  const guest: FakeGuestFactory = async ({ socketPath }) => {
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const fail = req.url === "/_ol/load" && failLoad;
        res.writeHead(fail ? 404 : 200, { "content-type": "application/json" });
        res.end(JSON.stringify(fail ? { error: "no handler" } : { loaded: true }));
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return {
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  };

  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir("ol-zygote-mem-"));
    failLoad = false;
    await writeTree(join(root, "code"), { "f.js": "exports.f = () => 1;" });
  });
  afterEach(async () => {
    await cleanup();
  });

  const code = (): LambdaCode =>
    ({ name: "app", version: "1", dir: join(root, "code"), config: {} }) as unknown as LambdaCode;
  const spec: SandboxSpec = {
    codeDir: "/unused",
    runtime: "node",
    command: ["node", "guest.js"],
    limits: DEFAULT_LIMITS,
    network: "host",
  };

  /** A pool over the fake backend, with what the test needs to watch it. */
  const setup = (run: number) => {
    const fake = fakeBackend({ guest, workDir: join(root, `scratch-${run}`) });
    const made: Sandbox[] = [];
    let inFlight = 0;
    const backend: SandboxBackend = {
      ...fake,
      create: async (s) => {
        inFlight++;
        try {
          const sandbox = await fake.create(s);
          made.push(sandbox);
          return sandbox;
        } finally {
          inFlight--;
        }
      },
    };
    const pool = new MemoryPool(64 * MB, () => {});
    const zygotes = new ZygotePool({
      backend,
      pool,
      installer: {} as NodeDepsInstaller,
      tree: parseTree({ packages: [] }),
      dir: join(root, `ready-${run}`),
      runtimeDir: join(root, "runtime"),
      limits: DEFAULT_LIMITS,
      network: "host",
      timers: new Timers(),
      headroomMb: 0,
    });
    const live = () => made.filter((s) => s.state !== "dead");
    const liveMb = () => live().reduce((sum, s) => sum + s.spec.limits.memoryMb, 0);
    const ready = () => (zygotes.stats()["zygote.ready"] ?? 0) as number;
    /** Waits until nothing is being created and the counts hold still. */
    const settle = async () => {
      let last = "";
      let still = 0;
      for (let i = 0; i < 300 && still < 3; i++) {
        await sleep(10);
        const now = `${inFlight}/${pool.usedMb}/${live().length}/${ready()}`;
        still = inFlight === 0 && now === last ? still + 1 : 0;
        last = now;
      }
    };
    return { fake, backend, made, pool, zygotes, live, liveMb, ready, settle };
  };

  it("gives back the memory of the ready runtimes it sheds", async () => {
    const t = setup(0);
    t.zygotes.start();
    await vi.waitFor(() => expect(t.ready()).toBe(3), { timeout: 5000 });
    expect(t.pool.usedMb).toBe(3 * MB);
    expect(await t.zygotes.shed(3 * MB)).toBe(3 * MB);
    await t.settle();
    expect(t.live()).toEqual([]);
    expect(t.pool.usedMb).toBe(0);
    await t.zygotes.shutdown();
    await t.fake.cleanup();
  });

  it("gives back the memory of a ready runtime that failed to load a lambda", async () => {
    const t = setup(0);
    t.zygotes.start();
    await vi.waitFor(() => expect(t.ready()).toBe(3), { timeout: 5000 });
    failLoad = true;
    expect(await t.zygotes.take(code(), spec, undefined)).toBeUndefined();
    failLoad = false;
    await t.settle();
    expect(t.made.filter((s) => s.deathReason === "zygote-failed")).toHaveLength(1);
    expect(t.pool.usedMb).toBe(t.liveMb());
    await t.zygotes.shutdown();
    await t.fake.cleanup();
  });

  it("gives back the memory of every ready runtime at shutdown, before the backend's cleanup", async () => {
    const t = setup(0);
    t.zygotes.start();
    await vi.waitFor(() => expect(t.ready()).toBe(3), { timeout: 5000 });
    await t.zygotes.shutdown();
    await t.settle();
    expect(t.live()).toEqual([]);
    expect(t.pool.usedMb).toBe(0);
    await t.fake.cleanup();
  });

  it("hands a taken runtime's memory to its new owner, who frees it when the sandbox ends", async () => {
    const t = setup(0);
    t.zygotes.start();
    await vi.waitFor(() => expect(t.ready()).toBe(3), { timeout: 5000 });
    const taken = await t.zygotes.take(code(), spec, undefined);
    if (!taken) throw new Error("no ready runtime was handed over");
    taken.reservation.bindTo(taken.sandbox);
    await t.settle();
    expect(t.pool.usedMb).toBe(4 * MB); // the taken one and three refilled
    await t.zygotes.shutdown();
    await t.settle();
    // The pool's shutdown leaves the instance's sandbox, and its memory, alone.
    expect(t.live()).toEqual([taken.sandbox]);
    expect(t.pool.usedMb).toBe(MB);
    await taken.sandbox.destroy("drained");
    await t.settle();
    expect(t.pool.usedMb).toBe(0);
    await t.fake.cleanup();
  });

  type Op =
    | { readonly op: "take" }
    | { readonly op: "take-failing" }
    | { readonly op: "cold" }
    | { readonly op: "shed"; readonly mb: number }
    | { readonly op: "crash"; readonly pick: number }
    | { readonly op: "drain"; readonly pick: number }
    | { readonly op: "shutdown" };
  const ops: fc.Arbitrary<Op> = fc.oneof(
    fc.constant({ op: "take" as const }),
    fc.constant({ op: "take-failing" as const }),
    fc.constant({ op: "cold" as const }),
    fc.record({ op: fc.constant("shed" as const), mb: fc.integer({ min: 1, max: 4 * MB }) }),
    fc.record({ op: fc.constant("crash" as const), pick: fc.nat() }),
    fc.record({ op: fc.constant("drain" as const), pick: fc.nat() }),
    fc.constant({ op: "shutdown" as const }),
  );

  it("counts exactly the memory of the live sandboxes, whatever happens to them", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(ops, { maxLength: 10 }), async (sequence) => {
        const t = setup(++run);
        /** Sandboxes an instance owns (taken or created cold), as an instance would hold them. */
        const owned: Sandbox[] = [];
        try {
          t.zygotes.start();
          for (const step of sequence) {
            switch (step.op) {
              case "take":
              case "take-failing": {
                failLoad = step.op === "take-failing";
                const taken = await t.zygotes.take(code(), spec, undefined);
                failLoad = false;
                if (taken) {
                  // What an instance does with a runtime handed to it.
                  taken.reservation.bindTo(taken.sandbox);
                  owned.push(taken.sandbox);
                }
                break;
              }
              case "cold": {
                const reservation = await t.pool.acquire(MB);
                const sandbox = await t.backend.create({ ...spec, codeDir: join(root, "code") });
                reservation.bindTo(sandbox);
                owned.push(sandbox);
                break;
              }
              case "shed":
                await t.zygotes.shed(step.mb);
                break;
              case "crash": {
                const live = t.live();
                const victim = live[step.pick % Math.max(1, live.length)];
                await (victim as unknown as { crash?: () => Promise<void> } | undefined)?.crash?.();
                break;
              }
              case "drain":
                await owned[step.pick % Math.max(1, owned.length)]?.destroy("drained");
                break;
              case "shutdown":
                await t.zygotes.shutdown();
                break;
            }
            await t.settle();
            expect(t.pool.usedMb).toBe(t.liveMb());
          }
          await t.zygotes.shutdown();
          await t.fake.cleanup();
          await t.settle();
          expect(t.live()).toEqual([]);
          expect(t.pool.usedMb).toBe(0);
        } finally {
          await t.zygotes.shutdown();
          await t.fake.cleanup();
        }
      }),
      { numRuns: 25 },
    );
  }, 120_000);
});
