import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBaseRootfs } from "../src/base-rootfs.js";
import { detectCgroupLayout } from "../src/cgroup/layout.js";
import { readMountInfo } from "../src/mountinfo.js";

const helper = new URL("../dist/ol-sock-helper", import.meta.url).pathname;

/** Why the integration tests cannot run here, or undefined when they can. */
export function whatIsMissing(): string | undefined {
  const missing: string[] = [];
  if (process.platform !== "linux") missing.push(`Linux (this is ${process.platform})`);
  else {
    if (process.getuid?.() !== 0) missing.push("root");
    const cg = detectCgroupLayout(readMountInfo());
    if (!cg.ok) missing.push(`cgroups: ${cg.missing}`);
    if (!existsSync(helper)) missing.push(`the built helper (${helper}; run pnpm build)`);
  }
  if (missing.length === 0) return undefined;
  const why = `sock integration tests skipped: missing ${missing.join(", ")}`;
  // Where the suite must run (CI as root), a missing piece is a failure, not a skip.
  if (process.env.OL_REQUIRE_SOCK === "1") throw new Error(why);
  console.warn(why);
  return why;
}

/** One base for every test file, rebuilt only when the host changed (it takes well under 1 s). */
export async function testBase(): Promise<string> {
  const { dir } = await buildBaseRootfs({ dir: join(tmpdir(), "ol-sock-test-base") });
  return dir;
}

export async function tempDir(
  prefix: string,
): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
