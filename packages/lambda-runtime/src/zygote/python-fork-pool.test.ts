import type { Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryPool } from "../manager/memory-pool.js";
import { Timers } from "../manager/timers.js";
import type { PipInstaller } from "../python/pip-installer.js";
import type { LambdaCode } from "../registry/directory-registry.js";
import { tempDir } from "../testing/fixtures.js";
import { PythonForkPool } from "./python-fork-pool.js";
import { parseTree } from "./tree.js";

/** A sandbox stub: enough of the contract for the pool (state, dead, destroy, fork). */
function stubSandbox(
  id: string,
  spec: SandboxSpec,
  fork: (spec: SandboxSpec) => Promise<Sandbox>,
): Sandbox {
  let resolveDead!: (r: string) => void;
  const dead = new Promise<string>((r) => {
    resolveDead = r;
  });
  const s = {
    id,
    spec,
    state: "running" as Sandbox["state"],
    dead,
    deathReason: undefined,
    fork,
    async destroy(reason = "requested") {
      if (s.state === "dead") return;
      s.state = "dead";
      resolveDead(reason);
    },
  };
  return s as unknown as Sandbox;
}

describe("PythonForkPool", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let zygotes: Sandbox[];
  let failForks: number;

  const backend: SandboxBackend = {
    name: "stub",
    capabilities: {
      fork: true,
      pause: true,
      downsizePausedMemory: false,
      limits: { memory: true, cpu: true, procs: true },
      networkModes: ["host"],
    },
    on: () => () => {},
    cleanup: async () => {},
    create: async (spec) => {
      const z = stubSandbox(`z${zygotes.length}`, spec, async (child) => {
        if (failForks > 0) {
          failForks--;
          throw new Error("the fork server is gone");
        }
        return stubSandbox(`child-of-${z.id}`, child, () => Promise.reject(new Error("no")));
      });
      zygotes.push(z);
      return z;
    },
  };

  const code = { name: "f", version: "1", dir: "/nowhere" } as unknown as LambdaCode;
  const spec: SandboxSpec = {
    codeDir: "/nowhere",
    runtime: "python",
    command: ["python3"],
    limits: { memoryMb: 64, cpuPercent: 100, procs: 16, timeoutMs: 1000 },
  };

  let pool: PythonForkPool;
  let memory: MemoryPool;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir("ol-pyfork-"));
    zygotes = [];
    failForks = 0;
    memory = new MemoryPool(1024, () => {});
    pool = new PythonForkPool({
      backend,
      pool: memory,
      pip: {} as PipInstaller,
      tree: parseTree({ packages: [], children: [] }),
      dir,
      runtimeDir: dir,
      limits: { memoryMb: 128, cpuPercent: 100, procs: 16, timeoutMs: 1000 },
      timers: new Timers(),
      headroomMb: 0,
    });
    pool.start();
    await vi.waitFor(() => expect(pool.stats()["zygote.python.ready"]).toBe(1));
  });
  afterEach(async () => {
    await pool.shutdown();
    await cleanup();
  });

  it("forks a child from the root zygote and reserves the child's memory", async () => {
    const taken = await pool.take(code, spec, undefined);
    expect(taken?.sandbox.id).toBe("child-of-z0");
    expect(taken?.node).toBe("root");
    expect(memory.usedMb).toBe(128 + 64);
    expect(zygotes[0]?.spec.role).toBe("zygote");
    expect(pool.stats()["zygote.python.hits.root"]).toBe(1);
  });

  it("a failed fork replaces the zygote with a fresh one once", async () => {
    failForks = 1;
    const taken = await pool.take(code, spec, undefined);
    expect(taken?.sandbox.id).toBe("child-of-z1");
    expect(zygotes[0]?.state).toBe("dead");
    expect(pool.stats()["zygote.python.fork-failures"]).toBe(1);
  });

  it("two failed forks give up (the caller creates cold) and release the memory", async () => {
    failForks = 2;
    expect(await pool.take(code, spec, undefined)).toBeUndefined();
    expect(pool.stats()["zygote.python.fork-failures"]).toBe(2);
    expect(pool.stats()["zygote.python.misses"]).toBe(1);
    await vi.waitFor(() => expect(memory.usedMb).toBe(0));
  });

  it("does not shed a zygote that has children", async () => {
    const taken = await pool.take(code, spec, undefined);
    expect(await pool.shed(128)).toBe(0);
    await taken?.sandbox.destroy();
    await vi.waitFor(async () => expect(await pool.shed(128)).toBe(128));
  });
});
