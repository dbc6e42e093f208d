import { execFile } from "node:child_process";
import { chmod, copyFile, mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestBase {
  readonly dir: string;
  readonly hash: string;
  /** Which builder made it. */
  readonly builder: "sandbox-sock" | "minimal";
}

type BuildBaseRootfs = (options: { dir: string }) => Promise<{ dir: string; hash: string }>;

/**
 * The base the default image is imported from: sandbox-sock's `buildBaseRootfs` (the same base
 * SOCK runs on), or, while that package does not export it yet, a minimal one made here.
 */
export async function buildTestBase(dir: string): Promise<TestBase> {
  const sock = (await import("@openlambda/sandbox-sock").catch(() => ({}))) as {
    buildBaseRootfs?: BuildBaseRootfs;
  };
  if (typeof sock.buildBaseRootfs === "function") {
    const base = await sock.buildBaseRootfs({ dir });
    return { ...base, builder: "sandbox-sock" };
  }
  return { ...(await buildMinimalBase(dir)), builder: "minimal" };
}

/** node (at /usr/local/bin/node, as the real builder puts it), sh, sleep, and their libraries. */
async function buildMinimalBase(dir: string): Promise<{ dir: string; hash: string }> {
  const binaries: [string, string][] = [
    [process.execPath, "/usr/local/bin/node"],
    ["/bin/sh", "/bin/sh"],
    ["/bin/sleep", "/bin/sleep"],
  ];
  const libs = new Set<string>();
  for (const [host] of binaries) {
    const { stdout } = await run("ldd", [host]);
    for (const m of stdout.matchAll(/(\/\S+\.so[^\s]*)/g)) if (m[1]) libs.add(m[1]);
  }
  for (const d of ["etc", "tmp", "proc", "sys", "dev", "usr/bin", "bin"])
    await mkdir(join(dir, d), { recursive: true });
  for (const [host, inside] of [...binaries, ...[...libs].map((l): [string, string] => [l, l])]) {
    await mkdir(dirname(join(dir, inside)), { recursive: true });
    await copyFile(host, join(dir, inside));
  }
  await writeFile(
    join(dir, "etc/passwd"),
    "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/sh\n",
  );
  await writeFile(join(dir, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  await chmod(join(dir, "tmp"), 0o1777);
  // A fixed hash: the same binaries make the same base, and a rerun reuses the image.
  const { stdout } = await run("sha256sum", [process.execPath, "/bin/sh", "/bin/sleep"]);
  const { createHash } = await import("node:crypto");
  return { dir, hash: `minimal-${createHash("sha256").update(stdout).digest("hex").slice(0, 32)}` };
}
