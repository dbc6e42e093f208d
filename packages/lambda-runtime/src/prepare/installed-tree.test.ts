import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chmod,
  chown,
  lchown,
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DependencyInstallError } from "../errors.js";
import { tempDir } from "../testing/fixtures.js";
import {
  ensureRootOwnedDir,
  INSTALLED_MARKER,
  isSealedInstall,
  publishInstall,
  sealTree,
} from "./installed-tree.js";

/** `root` and every path under it, relative; links listed, never followed (readdir's recursive mode follows them). */
async function entries(root: string, rel = ""): Promise<string[]> {
  const found = [rel];
  for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
    const path = join(rel, entry.name);
    if (entry.isDirectory()) found.push(...(await entries(root, path)));
    else found.push(path);
  }
  return found;
}

/** Any uid but root stands for the installer's guest: the code assumes none in particular. */
const GUEST = 43210;

describe.skipIf(process.getuid?.() !== 0)("sealing an installed tree (needs root)", () => {
  let outer: string;
  let tree: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir: outer, cleanup } = await tempDir("ol-seal-"));
    tree = join(outer, "tree");
  });
  afterEach(() => cleanup());

  /** What a dead installer leaves: its files, its modes, all its own. */
  async function guestTree(): Promise<void> {
    const files: [string, number][] = [
      ["package.json", 0o666],
      ["node_modules/.bin/run", 0o777],
      ["node_modules/.pnpm/pkg@1.0.0/node_modules/pkg/index.js", 0o600],
      ["node_modules/.pnpm/pkg@1.0.0/node_modules/pkg/tool", 0o4755],
      ["node_modules/.pnpm/pkg@1.0.0/node_modules/pkg/group", 0o2710],
      ["node_modules/.pnpm/pkg@1.0.0/node_modules/pkg/lib/deep/x.js", 0o646],
    ];
    for (const [rel] of files) {
      await mkdir(join(tree, rel, ".."), { recursive: true });
      await writeFile(join(tree, rel), rel);
    }
    // pnpm's layout: relative links inside the tree, to directories and files.
    await symlink(".pnpm/pkg@1.0.0/node_modules/pkg", join(tree, "node_modules/pkg"));
    await symlink("../tool", join(tree, "node_modules/.pnpm/pkg@1.0.0/node_modules/pkg/lib/t"));
    // And links a guest might plant, out to a file and a directory of the test's own.
    await writeTree([
      ["outside.txt", "outside"],
      ["outside-dir/inner.txt", "inner"],
    ]);
    await symlink(join(outer, "outside.txt"), join(tree, "to-file"));
    await symlink(join(outer, "outside-dir"), join(tree, "node_modules/to-dir"));
    for (const path of [
      join(outer, "outside.txt"),
      join(outer, "outside-dir"),
      join(outer, "outside-dir/inner.txt"),
    ]) {
      await chown(path, GUEST, GUEST);
      await chmod(path, 0o666);
    }
    await chownTree(tree, GUEST);
    // Modes after owners: a chown clears set-id bits.
    for (const [rel, mode] of files) await chmod(join(tree, rel), mode);
    await chmod(join(tree, "node_modules/.pnpm"), 0o3777);
    expect((await lstat(join(tree, files[3]?.[0] ?? ""))).mode & 0o7777).toBe(0o4755);
  }

  async function writeTree(entries: [string, string][]): Promise<void> {
    for (const [rel, text] of entries) {
      await mkdir(join(outer, rel, ".."), { recursive: true });
      await writeFile(join(outer, rel), text);
    }
  }

  async function chownTree(root: string, uid: number): Promise<void> {
    for (const rel of await entries(root)) await lchown(join(root, rel), uid, uid);
  }

  async function expectSealed(root: string): Promise<void> {
    const all = await entries(root);
    expect(all.length).toBeGreaterThan(10);
    for (const rel of all) {
      const st = await lstat(join(root, rel));
      expect([rel, st.uid, st.gid]).toEqual([rel, 0, 0]);
      if (st.isSymbolicLink()) continue;
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) expect([rel, mode]).toEqual([rel, 0o755]);
      else expect([rel, [0o644, 0o755].includes(mode)]).toEqual([rel, true]);
    }
  }

  it("makes every file, dir and link root's, dirs 0755, files 0644 or 0755, no set-id bits", async () => {
    await guestTree();
    await sealTree(tree);
    await expectSealed(tree);
    const mode = async (rel: string) => (await lstat(join(tree, rel))).mode & 0o7777;
    const pkg = "node_modules/.pnpm/pkg@1.0.0/node_modules/pkg";
    expect(await mode("node_modules/.bin/run")).toBe(0o755);
    expect(await mode(`${pkg}/index.js`)).toBe(0o644);
    expect(await mode(`${pkg}/tool`)).toBe(0o755); // was setuid
    expect(await mode(`${pkg}/group`)).toBe(0o755); // was setgid
    expect(await mode(`${pkg}/lib/deep/x.js`)).toBe(0o644); // was world-writable
    expect(await mode("node_modules/.pnpm")).toBe(0o755); // was sticky and setgid
    expect(await readFile(join(tree, "node_modules/pkg/index.js"), "utf8")).toContain("index.js");
  });

  it("never follows a symlink: what a link points to outside keeps its owner and mode", async () => {
    await guestTree();
    await sealTree(tree);
    for (const rel of ["outside.txt", "outside-dir", "outside-dir/inner.txt"]) {
      const st = await lstat(join(outer, rel));
      expect([rel, st.uid, st.mode & 0o7777]).toEqual([rel, GUEST, 0o666]);
    }
    expect(await readFile(join(outer, "outside.txt"), "utf8")).toBe("outside");
    expect((await lstat(join(tree, "to-file"))).isSymbolicLink()).toBe(true);
  });

  it("gives a hard-linked file an inode of its own: the other link keeps its owner, mode and content", async () => {
    await guestTree();
    const shared = join(outer, "store-file");
    await writeFile(shared, "stored");
    await chown(shared, GUEST, GUEST);
    await chmod(shared, 0o666);
    await link(shared, join(tree, "node_modules/linked.js"));
    await sealTree(tree);
    const outside = await lstat(shared);
    expect([outside.uid, outside.mode & 0o7777, outside.nlink]).toEqual([GUEST, 0o666, 1]);
    const inside = await lstat(join(tree, "node_modules/linked.js"));
    expect([inside.uid, inside.mode & 0o7777, inside.nlink]).toEqual([0, 0o644, 1]);
    expect(await readFile(join(tree, "node_modules/linked.js"), "utf8")).toBe("stored");
    expect(
      (await readdir(join(tree, "node_modules"))).filter((n) => n.includes("ol-copy")),
    ).toEqual([]);
  });

  it("refuses a FIFO in the tree, naming it", async () => {
    await guestTree();
    execFileSync("mkfifo", [join(tree, "node_modules/pipe")]);
    const error = await sealTree(tree).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DependencyInstallError);
    expect((error as Error).message).toContain("node_modules/pipe, a FIFO");
  });

  it("refuses a root that is a symlink, leaving its target alone", async () => {
    await guestTree();
    const link = join(outer, "link");
    await symlink(join(outer, "outside-dir"), link);
    await expect(sealTree(link)).rejects.toThrow(/not a directory/);
    expect((await lstat(join(outer, "outside-dir"))).uid).toBe(GUEST);
  });

  describe("publishInstall", () => {
    it("moves, seals, marks and renames an install into place", async () => {
      await guestTree();
      const target = join(outer, "installs", "abc");
      await mkdir(join(outer, "installs"));
      expect(isSealedInstall(target)).toBe(false);
      await publishInstall({
        installed: tree,
        staging: join(outer, "installs", ".staging"),
        target,
      });
      expect(existsSync(tree)).toBe(false);
      expect(existsSync(join(outer, "installs", ".staging"))).toBe(false);
      await expectSealed(target);
      expect(isSealedInstall(target)).toBe(true);
    });

    it("writes the marker afresh: a link the installer left under its name is not followed", async () => {
      await guestTree();
      const victim = join(outer, "outside.txt");
      await symlink(victim, join(tree, INSTALLED_MARKER));
      await lchown(join(tree, INSTALLED_MARKER), GUEST, GUEST);
      const target = join(outer, "abc");
      await publishInstall({ installed: tree, staging: join(outer, ".staging"), target });
      expect(await readFile(victim, "utf8")).toBe("outside");
      const marker = await lstat(join(target, INSTALLED_MARKER));
      expect([marker.isFile(), marker.uid]).toEqual([true, 0]);
    });

    it("replaces an install that is not sealed (a guest's, or an older version's), never keeps it", async () => {
      await guestTree();
      const target = join(outer, "abc");
      await mkdir(target);
      await writeFile(join(target, INSTALLED_MARKER), "planted");
      await writeFile(join(target, "evil.js"), "planted");
      await chownTree(target, GUEST);
      expect(isSealedInstall(target)).toBe(false);
      await publishInstall({ installed: tree, staging: join(outer, ".staging"), target });
      expect(existsSync(join(target, "evil.js"))).toBe(false);
      expect(isSealedInstall(target)).toBe(true);
    });

    it("leaves nothing in place when the check refuses the tree", async () => {
      await guestTree();
      const target = join(outer, "abc");
      const staging = join(outer, ".staging");
      const refused = new DependencyInstallError("no metadata");
      await expect(
        publishInstall({ installed: tree, staging, target, check: () => Promise.reject(refused) }),
      ).rejects.toBe(refused);
      expect([existsSync(target), existsSync(staging)]).toEqual([false, false]);
    });
  });

  it("takes back a directory of installs a guest was handed", async () => {
    const dir = join(outer, "deps");
    await mkdir(dir);
    await chown(dir, GUEST, GUEST);
    await chmod(dir, 0o777);
    await ensureRootOwnedDir(dir);
    const st = await lstat(dir);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o755]);
  });
});
