import { setTimeout as sleep } from "node:timers/promises";
import {
  type Sandbox,
  type SandboxBackend,
  type SandboxSpec,
  silentLogger,
} from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { SandboxedInstance } from "./instance.js";
import { MemoryPool } from "./memory-pool.js";
import { Timers } from "./timers.js";

/**
 * A sandbox whose pause takes a while (as freezing a cgroup or a container does) and whose
 * guest answers nothing while it is frozen: pause and unpause run one after the other, as
 * BaseSandbox serialises them.
 */
function slowPausingSandbox(pauseMs: number) {
  let state: "running" | "paused" | "dead" = "running";
  let chain: Promise<unknown> = Promise.resolve();
  const serial = (fn: () => Promise<void>) => {
    const next = chain.then(fn);
    chain = next.catch(() => {});
    return next;
  };
  const sandbox = {
    id: "sb-slow-pause",
    get state() {
      return state;
    },
    deathReason: undefined,
    dead: new Promise(() => {}),
    pause: () =>
      serial(async () => {
        await sleep(pauseMs);
        state = "paused";
      }),
    unpause: () =>
      serial(async () => {
        state = "running";
      }),
    destroy: async () => {
      state = "dead";
    },
    destroyIfPaused: async () => false,
    dispatcher: {
      // The guest takes 2 × pauseMs to answer, and is stuck while frozen.
      async request() {
        await sleep(pauseMs * 2);
        while (state === "paused") await sleep(5);
        if (state === "dead") throw new Error("sandbox gone");
        return {
          statusCode: 200,
          headers: {},
          body: (async function* () {
            yield Buffer.from("ok");
          })(),
        };
      },
    },
  };
  return sandbox as unknown as Sandbox;
}

const spec = {
  codeDir: "/nonexistent",
  runtime: "node",
  command: ["node"],
  limits: { memoryMb: 64, cpuPercent: 100, procs: 8, timeoutMs: 2000 },
} as unknown as SandboxSpec;

async function drain(body: unknown): Promise<void> {
  for await (const _ of body as AsyncIterable<unknown>) {
  }
}

describe("SandboxedInstance", () => {
  it("does not send a call into a sandbox that an idle pause is still freezing", async () => {
    const sandbox = slowPausingSandbox(100);
    const backend = { create: async () => sandbox } as unknown as SandboxBackend;
    const instance = new SandboxedInstance({
      lambda: "l",
      version: "v1",
      backend,
      spec,
      pool: new MemoryPool(1024, () => {}),
      timers: new Timers(),
      logger: silentLogger,
      reuseSandbox: true,
      pauseIdleMs: 0,
      concurrency: 1,
      onAvailable: () => {},
    });
    const first = await instance.invoke({ method: "GET", path: "/", headers: {}, body: null });
    await drain(first.body);
    // The idle timer (0 ms) starts the pause; the next call comes while it is under way.
    await sleep(20);
    const started = Date.now();
    const second = await instance.invoke({ method: "GET", path: "/", headers: {}, body: null });
    await drain(second.body);
    expect(second.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("destroys a sandbox whose create was still under way when a drain ran out of time", async () => {
    const sandbox = slowPausingSandbox(10);
    const backend = {
      create: async () => {
        await sleep(300);
        return sandbox;
      },
    } as unknown as SandboxBackend;
    const instance = new SandboxedInstance({
      lambda: "l",
      version: "v1",
      backend,
      spec: { ...spec, limits: { ...spec.limits, timeoutMs: 20 } },
      pool: new MemoryPool(1024, () => {}),
      timers: new Timers(),
      logger: silentLogger,
      reuseSandbox: true,
      pauseIdleMs: 1000,
      concurrency: 1,
      onAvailable: () => {},
    });
    const call = instance.invoke({ method: "GET", path: "/", headers: {}, body: null }).then(
      (r) => drain(r.body),
      () => undefined,
    );
    await sleep(5);
    // The call is in flight (its sandbox still being made) when the drain's time runs out.
    await instance.drain();
    expect(sandbox.state).toBe("dead");
    await call;
  });
});
