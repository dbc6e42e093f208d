import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { SandboxDeadError } from "@openlambda/sandbox-core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { EXIT, main, reportError } from "./main.js";

describe("ol", () => {
  afterEach(() => vi.restoreAllMocks());

  it("the built binary prints help and exits 0", () => {
    const bin = fileURLToPath(new URL("../dist/bin.js", import.meta.url));
    const run = spawnSync(process.execPath, [bin, "--help"], { encoding: "utf8" });
    expect(run.status).toBe(EXIT.ok);
    expect(run.stdout).toMatch(/Usage:\s+\$ ol/);
  });

  it("reports an OL_* error as one line with its code and exits 1", () => {
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    expect(reportError(new SandboxDeadError("sandbox x is dead"))).toBe(EXIT.failure);
    expect(err).toHaveBeenCalledWith("ol: OL_SANDBOX_DEAD: sandbox x is dead\n");
  });

  it("reports an unknown option as a usage error", async () => {
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    vi.spyOn(console, "info").mockImplementation(() => {});
    vi.spyOn(console, "log").mockImplementation(() => {});
    expect(await main(["node", "ol", "no-such-command"])).toBe(EXIT.usage);
    expect(err).not.toHaveBeenCalledWith(expect.stringContaining("unexpected"));
  });
});
