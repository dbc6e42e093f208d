import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  InvalidSpecError,
  SandboxDeadError,
  SandboxPauseError,
  SandboxUnpauseError,
  SandboxUnsupportedError,
} from "./errors.js";
import { GuestSocket } from "./guest-socket.js";
import { guestClient } from "./guest-transport.js";
import { BaseSandbox } from "./sandbox-base.js";
import type { CpuGroup, SandboxEvent, SandboxStats } from "./types.js";

/** A sandbox whose hooks are scripted by the test, over a real unix-socket HTTP server. */
class ScriptedSandbox extends BaseSandbox {
  calls: string[] = [];
  failPause = false;
  failUnpause = false;
  pauseDelayMs = 0;
  canJoin = false;

  protected async doPause() {
    this.calls.push("pause");
    if (this.pauseDelayMs) await new Promise((r) => setTimeout(r, this.pauseDelayMs));
    if (this.failPause) throw new Error("freezer said no");
  }
  protected async doUnpause() {
    this.calls.push("unpause");
    if (this.failUnpause) throw new Error("thaw said no");
  }
  protected async doDestroy(reason: string) {
    this.calls.push(`destroy:${reason}`);
  }
  protected async doStats(): Promise<SandboxStats> {
    return { memoryBytes: 1, memoryLimitBytes: 2, cpuUsageUs: 3, pids: 1 };
  }
  protected async doLogs() {
    return "log";
  }
  protected override async doJoinCpuGroup(group: CpuGroup) {
    if (!this.canJoin) return super.doJoinCpuGroup(group);
    this.calls.push(`join:${group.name}`);
  }
  crash() {
    return this.died("crashed");
  }
}

describe("BaseSandbox lifecycle rules", () => {
  let dir: string;
  let server: Server;
  let events: SandboxEvent[];
  let sandbox: ScriptedSandbox;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "ol-base-"));
    const socketPath = join(dir, "ol.sock");
    server = createServer((_req, res) => res.end("hi"));
    await new Promise<void>((r) => server.listen(socketPath, r));
    events = [];
    sandbox = new ScriptedSandbox({
      id: "s1",
      spec: {
        codeDir: dir,
        runtime: "custom",
        command: ["x"],
        limits: { memoryMb: 64, cpuPercent: 100, procs: 8, timeoutMs: 1000 },
      },
      transport: guestClient(GuestSocket.open(dir, "ol.sock") as GuestSocket),
      emit: (e) => events.push(e),
    });
  });

  afterEach(async () => {
    await sandbox.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const ping = async () =>
    (await request("http://guest/", { dispatcher: sandbox.dispatcher })).body.text();

  it("serves requests through the dispatcher while alive", async () => {
    expect(await ping()).toBe("hi");
    // Closing the caller's view of the dispatcher does not close the sandbox's connection.
    await sandbox.dispatcher.close();
    expect(await ping()).toBe("hi");
  });

  it("runs the pause hook once for a double pause and once for a double unpause", async () => {
    await sandbox.pause();
    await sandbox.pause();
    await sandbox.unpause();
    await sandbox.unpause();
    expect(sandbox.calls).toEqual(["pause", "unpause"]);
    expect(events.map((e) => e.type)).toEqual(["paused", "unpaused"]);
  });

  it("serialises concurrent pause and unpause calls", async () => {
    sandbox.pauseDelayMs = 30;
    await Promise.all([sandbox.pause(), sandbox.unpause(), sandbox.pause()]);
    expect(sandbox.calls).toEqual(["pause", "unpause", "pause"]);
    expect(sandbox.state).toBe("paused");
  });

  it("destroys the sandbox when pause fails, and rejects with SandboxPauseError", async () => {
    sandbox.failPause = true;
    const err = await sandbox.pause().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxPauseError);
    expect((err as Error).cause).toEqual(new Error("freezer said no"));
    expect(sandbox.state).toBe("dead");
    expect(sandbox.deathReason).toBe("pause-failed");
    expect(sandbox.calls).toEqual(["pause", "destroy:pause-failed"]);
  });

  it("destroys the sandbox when unpause fails", async () => {
    await sandbox.pause();
    sandbox.failUnpause = true;
    await expect(sandbox.unpause()).rejects.toBeInstanceOf(SandboxUnpauseError);
    expect(await sandbox.dead).toBe("unpause-failed");
  });

  it("tears down once however many destroys race, and rejects every call after", async () => {
    await Promise.all([sandbox.destroy(), sandbox.destroy("evicted"), sandbox.crash()]);
    expect(sandbox.calls).toEqual(["destroy:requested"]);
    expect(events.filter((e) => e.type === "destroyed")).toHaveLength(1);
    for (const call of [
      () => sandbox.pause(),
      () => sandbox.unpause(),
      () => sandbox.stats(),
      () => sandbox.logs(),
      ping,
    ]) {
      await expect(call()).rejects.toBeInstanceOf(SandboxDeadError);
    }
  });

  it("records a death reported by the backend", async () => {
    await sandbox.crash();
    expect(await sandbox.dead).toBe("crashed");
    await expect(sandbox.pause()).rejects.toThrow(/dead \(crashed\)/);
  });

  it("a pause queued behind a destroy rejects as dead", async () => {
    sandbox.pauseDelayMs = 20;
    const first = sandbox.pause();
    const destroyed = sandbox.destroy();
    const second = sandbox.pause();
    await first.catch(() => {});
    await destroyed;
    await expect(second).rejects.toBeInstanceOf(SandboxDeadError);
  });

  it("rejects fork on a backend without it", async () => {
    await expect(sandbox.fork(sandbox.spec)).rejects.toBeInstanceOf(SandboxUnsupportedError);
  });

  it("rejects joinCpuGroup on a backend without it, and the spec names no group", async () => {
    await expect(sandbox.joinCpuGroup({ name: "f", cpuPercent: 100 })).rejects.toBeInstanceOf(
      SandboxUnsupportedError,
    );
    expect(sandbox.spec.cpuGroup).toBeUndefined();
  });

  it("joins a CPU group once: the spec shows it, a second join and a bad group are refused", async () => {
    sandbox.canJoin = true;
    await expect(sandbox.joinCpuGroup({ name: "..", cpuPercent: 100 })).rejects.toThrow(
      /cpuGroup\.name/,
    );
    await sandbox.joinCpuGroup({ name: "lambda-a", cpuPercent: 150 });
    expect(sandbox.spec.cpuGroup).toEqual({ name: "lambda-a", cpuPercent: 150 });
    await expect(sandbox.joinCpuGroup({ name: "lambda-b", cpuPercent: 100 })).rejects.toThrow(
      InvalidSpecError,
    );
    expect(sandbox.calls).toEqual(["join:lambda-a"]);
  });
});
