import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  fakeBackend,
  type Sandbox,
  type SandboxBackend,
  type SandboxEvent,
} from "@openlambda/sandbox-core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LambdaManager } from "../manager/lambda-manager.js";
import { DirectoryRegistry } from "../registry/directory-registry.js";
import { inProcessNodeGuest, tempDir, text, writeTree } from "../testing/fixtures.js";
import { parseWorkerConfig } from "../worker-config.js";

describe("Node zygotes (ready runtimes) over the fake backend", () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let backend: SandboxBackend;
  let manager: LambdaManager;
  let events: SandboxEvent[];
  /** Every sandbox the backend made, by id. */
  let made: Map<string, Sandbox>;

  /** `cpuGroups`: the backend claims CPU groups; `join`: and can move a ready runtime into one. */
  const start = async (
    tree: object,
    extra: Record<string, unknown> = {},
    groups: { cpuGroups?: boolean; join?: boolean } = {},
  ) => {
    await writeTree(root, { "tree.json": JSON.stringify(tree) });
    const config = parseWorkerConfig(
      { import_cache_tree: join(root, "tree.json"), pause_idle_ms: 1000, ...extra },
      root,
    );
    const registry = new DirectoryRegistry({
      dir: config.registry,
      codeCacheDir: join(root, "code"),
      cacheMs: 50,
    });
    await registry.init();
    const fake = fakeBackend({
      guest: inProcessNodeGuest,
      workDir: join(root, "scratch"),
      cpuGroups: groups.cpuGroups === true,
    });
    made = new Map();
    backend = {
      ...fake,
      capabilities: {
        ...fake.capabilities,
        joinCpuGroup: groups.join ?? groups.cpuGroups === true,
      },
      create: async (spec) => {
        const sandbox = await fake.create(spec);
        made.set(sandbox.id, sandbox);
        return sandbox;
      },
    };
    events = [];
    backend.on((e) => events.push(e));
    manager = new LambdaManager({ backend, registry, config });
    await manager.start();
  };
  const readyCount = () => (manager.stats()["zygote.ready"] ?? 0) as number;

  beforeEach(async () => {
    ({ dir: root, cleanup } = await tempDir("ol-zygote-"));
  });
  afterEach(async () => {
    await manager?.shutdown();
    await cleanup();
  });

  it("hands a ready root runtime to a lambda without packages, once, and refills the pool", async () => {
    await start({ packages: [], children: [] });
    await vi.waitFor(() => expect(readyCount()).toBe(3), { timeout: 5000 });
    await writeTree(join(root, "registry", "a"), {
      "f.js": "exports.f = () => ({ who: 'a', env: process.env.A_VAR ?? null });",
      "ol.yaml": "environment:\n  A_VAR: from-a\n",
    });
    await writeTree(join(root, "registry", "b"), {
      "f.mjs": "export const f = () => ({ who: 'b' });",
    });
    const creates = () => events.filter((e) => e.type === "created").length;
    const before = creates();
    expect(
      JSON.parse(
        await text(
          await manager.invoke("a", { method: "POST", path: "/", headers: {}, body: null }),
        ),
      ),
    ).toMatchObject({
      who: "a",
    });
    expect(
      JSON.parse(
        await text(
          await manager.invoke("b", { method: "POST", path: "/", headers: {}, body: null }),
        ),
      ),
    ).toEqual({
      who: "b",
    });
    const stats = manager.stats();
    expect(stats["zygote.hits.root"]).toBe(2);
    // Two sandboxes handed over, none created cold for the lambdas; the pool refills behind them.
    const debug = manager.debug() as {
      lambdas: { name: string; instances: { sandbox: { id: string } | null }[] }[];
    };
    const ids = debug.lambdas.map((l) => l.instances[0]?.sandbox?.id);
    expect(new Set(ids).size).toBe(2);
    await vi.waitFor(() => expect(readyCount()).toBe(3), { timeout: 5000 });
    expect(creates() - before).toBe(2); // the two refills
  });

  const invoke = (name: string) =>
    manager.invoke(name, { method: "POST", path: "/", headers: {}, body: null }).then(text);
  const sandboxOf = (name: string) => {
    const debug = manager.debug() as {
      lambdas: { name: string; instances: { sandbox: { id: string } | null }[] }[];
    };
    const id = debug.lambdas.find((l) => l.name === name)?.instances[0]?.sandbox?.id;
    return made.get(id ?? "");
  };

  it("moves a ready runtime into its lambda's CPU group when it hands it over", async () => {
    await start({ packages: [] }, { limits: { lambda_cpu_percent: 150 } }, { cpuGroups: true });
    await vi.waitFor(() => expect(readyCount()).toBe(3), { timeout: 5000 });
    await writeTree(join(root, "registry", "a"), { "f.js": "exports.f = () => 1;" });
    await invoke("a");
    expect(manager.stats()["zygote.hits.root"]).toBe(1);
    expect(sandboxOf("a")?.spec.cpuGroup).toEqual({ name: "a", cpuPercent: 150 });
    // The ones still waiting belong to no lambda yet.
    for (const s of made.values())
      if (s !== sandboxOf("a")) expect(s.spec.cpuGroup).toBeUndefined();
  });

  it("creates a lambda's sandbox in its CPU group instead where a ready runtime cannot join one", async () => {
    await start({ packages: [] }, {}, { cpuGroups: true, join: false });
    await vi.waitFor(() => expect(readyCount()).toBe(3), { timeout: 5000 });
    await writeTree(join(root, "registry", "a"), { "f.js": "exports.f = () => 1;" });
    await invoke("a");
    expect(manager.stats()["zygote.hits.root"]).toBeUndefined();
    expect(readyCount()).toBe(3);
    expect(sandboxOf("a")?.spec.cpuGroup).toEqual({ name: "a", cpuPercent: 100 });
  });

  it("is off with features.import_cache set to an empty string", async () => {
    await start({ packages: [] }, { features: { import_cache: "" } });
    await sleep(200);
    expect(readyCount()).toBe(0);
    expect(events).toEqual([]);
  });

  it("does not give a ready runtime to a lambda with its own limits", async () => {
    await start({ packages: [] });
    await vi.waitFor(() => expect(readyCount()).toBe(3), { timeout: 5000 });
    await writeTree(join(root, "registry", "big"), {
      "f.js": "exports.f = () => 1;",
      "ol.yaml": "limits:\n  memory: 256\n",
    });
    await text(await manager.invoke("big", { method: "POST", path: "/", headers: {}, body: null }));
    expect(manager.stats()["zygote.hits.root"]).toBeUndefined();
    expect(readyCount()).toBe(3);
  });

  it("does not give a ready runtime to a lambda with a disk of its own, even one the same size in all", async () => {
    await start({ packages: [] });
    await vi.waitFor(() => expect(readyCount()).toBe(3), { timeout: 5000 });
    // 96 + 64 is the ready runtimes' 128 + 32: the same memory limit, another disk.
    await writeTree(join(root, "registry", "disky"), {
      "f.js": "exports.f = () => 1;",
      "ol.yaml": "limits:\n  memory: 96\n  disk: 64\n",
    });
    await text(
      await manager.invoke("disky", { method: "POST", path: "/", headers: {}, body: null }),
    );
    expect(manager.stats()["zygote.hits.root"]).toBeUndefined();
    expect(readyCount()).toBe(3);
  });
});
