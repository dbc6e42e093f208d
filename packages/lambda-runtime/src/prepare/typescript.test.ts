// biome-ignore-all lint/suspicious/noTemplateCurlyInString: test sources hold template literals as text
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdir, open, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LambdaBuildError } from "../errors.js";
import { tempDir, writeTree } from "../testing/fixtures.js";
import { MAX_SOURCE_BYTES } from "./contained-file.js";
import { COMPILED_ENTRY, compileTypeScript } from "./typescript.js";

describe("compileTypeScript", () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir("ol-ts-"));
  });
  afterEach(() => cleanup());

  it("bundles f.ts and the .ts files it imports into one module, keeping packages external", async () => {
    await writeTree(dir, {
      "f.ts": `import { double } from "./lib/math.ts";\nimport isNumber from "is-number";\nexport function f(e: { n: number }): number { return isNumber(e.n) ? double(e.n) : 0; }\n`,
      "lib/math.ts": "export const double = (n: number): number => n * 2;\n",
    });
    expect(await compileTypeScript(dir)).toBe(true);
    const out = await readFile(join(dir, COMPILED_ENTRY), "utf8");
    expect(out).toContain("n * 2");
    expect(out).toMatch(/from "is-number"/);
    expect(out).not.toContain(": number");
  });

  it("does nothing for a lambda without f.ts", async () => {
    await writeTree(dir, { "f.js": "exports.f = () => 1;" });
    expect(await compileTypeScript(dir)).toBe(false);
  });

  it("reports a syntax error with file, line and column", async () => {
    await writeTree(dir, { "f.ts": "export function f(e: any) {\n  return e +;\n}\n" });
    const error = await compileTypeScript(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LambdaBuildError);
    expect((error as Error).message).toMatch(/^TypeScript: f\.ts:2:\d+: /);
  });

  it("reports a missing relative import", async () => {
    await writeTree(dir, { "f.ts": 'import { x } from "./nope.ts";\nexport const f = () => x;\n' });
    await expect(compileTypeScript(dir)).rejects.toThrow(/nope\.ts/);
  });
});

/**
 * The build runs as the worker: each test puts a secret beside the lambda (in the test's own
 * temp dir, outside the lambda's) and tries to get it into the build. A refusal must name the
 * import and its file, and the secret must appear nowhere: not in the error, not in any file.
 */
describe("compileTypeScript keeps a build inside the lambda's directory", () => {
  let outer: string;
  let lam: string;
  let cleanup: () => Promise<void>;
  let secret: string;
  beforeEach(async () => {
    ({ dir: outer, cleanup } = await tempDir("ol-ts-confine-"));
    lam = join(outer, "lam");
    await mkdir(lam);
    secret = `SECRET-${randomUUID()}`;
    await writeTree(outer, {
      "secret.txt": `${secret}\n`,
      "secret.json": JSON.stringify({ token: secret }),
      "secret.ts": `export default "${secret}";\n`,
      "secret.css": `body::after { content: "${secret}"; }\n`,
      "dir/x.ts": `export default "${secret}";\n`,
    });
  });
  afterEach(() => cleanup());

  /** Every file's text under `root`, symlinks not followed. */
  async function allText(root: string): Promise<string> {
    let text = "";
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) text += await readFile(join(entry.parentPath, entry.name), "latin1");
    }
    return text;
  }

  async function expectRefused(...mentions: readonly (string | RegExp)[]): Promise<string> {
    const error = await compileTypeScript(lam).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LambdaBuildError);
    expect((error as LambdaBuildError).code).toBe("OL_LAMBDA_BUILD_FAILED");
    const message = (error as Error).message;
    for (const mention of mentions) {
      if (typeof mention === "string") expect(message).toContain(mention);
      else expect(message).toMatch(mention);
    }
    expect(inspect(error, { depth: 20 })).not.toContain(secret);
    expect(existsSync(join(lam, COMPILED_ENTRY))).toBe(false);
    expect(await allText(lam)).not.toContain(secret);
    return message;
  }

  it("refuses an absolute import (the audit's token read), naming it and its file", async () => {
    const target = join(outer, "secret.txt");
    await writeTree(lam, {
      "f.ts": `import t from "${target}" with { type: "text" };\nexport const f = () => t;\n`,
    });
    await expectRefused(`"${target}"`, /^TypeScript: f\.ts:1:\d+: /, "absolute path");
  });

  it("refuses an absolute path even when it names a file inside the lambda", async () => {
    await writeTree(lam, {
      "lib.ts": "export default 1;\n",
      "f.ts": `import x from "${join(lam, "lib.ts")}";\nexport const f = () => x;\n`,
    });
    await expectRefused("absolute path", "f.ts");
  });

  it("refuses a file: URL import", async () => {
    await writeTree(lam, {
      "f.ts": `import t from "file://${join(outer, "secret.txt")}" with { type: "text" };\nexport const f = () => t;\n`,
    });
    await expectRefused("file://", "f.ts");
  });

  it.each([
    [
      "a text import",
      `import t from "../secret.txt" with { type: "text" };\nexport const f = () => t;`,
    ],
    [
      "a bytes import",
      `import t from "../secret.txt" with { type: "bytes" };\nexport const f = () => t;`,
    ],
    ["a JSON import", `import t from "../secret.json";\nexport const f = () => t;`],
    ["a .ts import", `import t from "../secret.ts";\nexport const f = () => t;`],
    ["a require", `export const f = () => require("../secret.json");`],
    ["an import() with a literal", `export const f = () => import("../secret.json");`],
    ["a CSS import", `import "../secret.css";\nexport const f = () => 1;`],
    [
      "a deep climb",
      `import t from "./a/../../secret.txt" with { type: "text" };\nexport const f = () => t;`,
    ],
  ])("refuses %s that leads out of the lambda with ..", async (_what, code) => {
    await writeTree(lam, { "f.ts": `${code}\n`, "a/keep.txt": "" });
    await expectRefused("f.ts", /"(\.\/a\/)?\.\.\/(\.\.\/)?secret\.(txt|json|ts|css)"/, "outside");
  });

  it("refuses an import from a nested file, naming that file", async () => {
    await writeTree(lam, {
      "f.ts": 'import g from "./sub/g.ts";\nexport const f = () => g;\n',
      "sub/g.ts": 'import t from "../../secret.txt" with { type: "text" };\nexport default t;\n',
    });
    await expectRefused(/sub\/g\.ts:1:\d+: /, '"../../secret.txt"');
  });

  it("refuses CSS @import and url() that lead out", async () => {
    await writeTree(lam, {
      "f.ts": 'import "./style.css";\nexport const f = () => 1;\n',
      "style.css": '@import "../secret.css";\n',
    });
    await expectRefused(/style\.css:1:\d+: /, 'CSS @import "../secret.css"');
    await writeTree(lam, { "style.css": "body { background: url(../secret.txt); }\n" });
    await expectRefused(/style\.css:1:\d+: /, '"../secret.txt"');
  });

  it("refuses a symlinked file that leads out", async () => {
    await writeTree(lam, { "f.ts": 'import t from "./lib.ts";\nexport const f = () => t;\n' });
    await symlink(join(outer, "secret.ts"), join(lam, "lib.ts"));
    await expectRefused('"./lib.ts"', "f.ts", "outside");
  });

  it("refuses a relative symlink and a symlinked directory that lead out", async () => {
    await writeTree(lam, {
      "f.ts":
        'import a from "./sub/x.ts";\nimport b from "./rel.txt" with { type: "text" };\nexport const f = () => [a, b];\n',
    });
    await symlink("../dir", join(lam, "sub"));
    await symlink("../secret.txt", join(lam, "rel.txt"));
    await expectRefused('"./sub/x.ts"', "f.ts");
  });

  it("refuses an f.ts that is itself a symlink out of the lambda", async () => {
    await symlink(join(outer, "secret.ts"), join(lam, "f.ts"));
    await expectRefused("entry", "outside");
  });

  it("never reads a FIFO or a huge file in the lambda (no hang, no memory blow-up)", async () => {
    await writeTree(lam, {
      "f.ts": 'import t from "./pipe.txt" with { type: "text" };\nexport const f = () => t;\n',
    });
    execFileSync("mkfifo", [join(lam, "pipe.txt")]);
    await expectRefused("pipe.txt", "not a regular file");
    await writeTree(lam, {
      "f.ts": 'import t from "./big.txt" with { type: "text" };\nexport const f = () => t;\n',
    });
    const big = await open(join(lam, "big.txt"), "w");
    await big.truncate(MAX_SOURCE_BYTES + 1); // sparse: no disk used
    await big.close();
    await expectRefused("big.txt", "larger than");
  });

  it("refuses import attributes esbuild does not know", async () => {
    await writeTree(lam, {
      "data.txt": "x",
      "f.ts": 'import t from "./data.txt" with { type: "__proto__" };\nexport const f = () => t;\n',
    });
    await expectRefused('"__proto__"');
  });

  describe("computed import paths (esbuild globs, which list directories before any plugin sees them)", () => {
    it.each([
      [
        "a template import()",
        "export const f = (n: string) => import(`../${n}`);",
        "import(`../${n}`)",
      ],
      ["a + require", 'export const f = (n: string) => require("../" + n);', 'require("../" + n)'],
      [
        "a template hidden behind a type assertion",
        "export const f = (n: unknown) => import(`../${n as string}.json` as string);",
        "import(`../${n}.json`)",
      ],
      [
        "a conditional with a template branch",
        'export const f = (c: boolean, n: string) => import(c ? `../${n}` : "./x.ts");',
        "import(`../${n}`)",
      ],
      [
        "a require.resolve template",
        "export const f = (n: string) => require.resolve(`../${n}`);",
        "require.resolve(",
      ],
    ])("refuses %s", async (_what, code, shown) => {
      await writeTree(lam, { "f.ts": `${code}\n`, "x.ts": "export default 1;\n" });
      await expectRefused("f.ts", shown, "literal relative path");
    });

    it("leaves an import() of a variable for run time", async () => {
      await writeTree(lam, { "f.ts": "export const f = (n: string) => import(n);\n" });
      expect(await compileTypeScript(lam)).toBe(true);
      expect(await readFile(join(lam, COMPILED_ENTRY), "utf8")).toContain("import(n)");
    });
  });

  describe("tsconfig.json", () => {
    it.each([
      ["extends outside", { extends: "../secret.json" }, '"extends"'],
      ["extends an absolute path", { extends: "/etc/os-release" }, '"extends"'],
      ["extends a package", { extends: "@tsconfig/node22/tsconfig.json" }, '"extends"'],
      ["a baseUrl outside", { compilerOptions: { baseUrl: ".." } }, 'compilerOptions.baseUrl ".."'],
      [
        "paths outside",
        { compilerOptions: { paths: { "@x/*": ["../secret.txt"] } } },
        'compilerOptions.paths["@x/*"] "../secret.txt"',
      ],
      [
        "paths under a baseUrl that climb out",
        { compilerOptions: { baseUrl: "./sub", paths: { "@x/*": ["../../*"] } } },
        'compilerOptions.paths["@x/*"] "../../*"',
      ],
      [
        "absolute paths",
        { compilerOptions: { paths: { "@x/*": ["/etc/*"] } } },
        'compilerOptions.paths["@x/*"] "/etc/*"',
      ],
    ])("refuses %s", async (_what, tsconfig, named) => {
      await writeTree(lam, {
        "tsconfig.json": JSON.stringify(tsconfig),
        "f.ts": 'import t from "@x/secret.txt" with { type: "text" };\nexport const f = () => t;\n',
        "sub/keep.txt": "",
      });
      await expectRefused("tsconfig.json", named, /not supported|outside/);
    });

    it("checks every copy of a key given twice, whichever one a parser keeps", async () => {
      await writeTree(lam, {
        "tsconfig.json": '{ "extends": "../secret.json", "extends": null }',
        "f.ts": "export const f = () => 1;\n",
      });
      await expectRefused('"extends"');
    });

    it("refuses a tsconfig.json that is a symlink out, or not JSON", async () => {
      await writeTree(lam, { "f.ts": "export const f = () => 1;\n" });
      await symlink(join(outer, "secret.json"), join(lam, "tsconfig.json"));
      await expectRefused("tsconfig.json leads outside");
      await rm(join(lam, "tsconfig.json"));
      await writeTree(lam, { "tsconfig.json": '{ "compilerOptions": ' });
      await expectRefused("tsconfig.json is not a JSON object");
    });

    it("refuses a paths target that a * climbs out of, when the import resolves", async () => {
      await writeTree(lam, {
        "tsconfig.json": '{ "compilerOptions": { "paths": { "@x/*": ["./*"] } } }',
        "f.ts":
          'import t from "@x/../secret.txt" with { type: "text" };\nexport const f = () => t;\n',
      });
      await expectRefused('"@x/../secret.txt"', "f.ts", "outside");
    });

    it("ignores a tsconfig.json in a parent directory: its paths never apply", async () => {
      await writeTree(outer, {
        "tsconfig.json": JSON.stringify({
          compilerOptions: { paths: { "@x/*": ["./secret.txt"] } },
        }),
      });
      await writeTree(lam, {
        "f.ts": 'import t from "@x/y" with { type: "text" };\nexport const f = () => t;\n',
      });
      expect(await compileTypeScript(lam)).toBe(true);
      const out = await readFile(join(lam, COMPILED_ENTRY), "utf8");
      expect(out).toMatch(/from "@x\/y"/);
      expect(await allText(lam)).not.toContain(secret);
    });
  });

  it("never reads node_modules of a parent directory: a package import stays external", async () => {
    await writeTree(outer, {
      "node_modules/evilpkg/package.json": '{ "name": "evilpkg", "main": "index.js" }',
      "node_modules/evilpkg/index.js": `module.exports = "${secret}";\n`,
    });
    await writeTree(lam, {
      "package.json": '{ "dependencies": { "evilpkg": "1.0.0" } }',
      "f.ts": 'import e from "evilpkg";\nexport const f = () => e;\n',
    });
    expect(await compileTypeScript(lam)).toBe(true);
    expect(await readFile(join(lam, COMPILED_ENTRY), "utf8")).toMatch(/from "evilpkg"/);
    expect(await allText(lam)).not.toContain(secret);
  });

  it("refuses package.json imports (#name) that lead out", async () => {
    await writeTree(lam, {
      "package.json": JSON.stringify({ imports: { "#s": join(outer, "secret.txt") } }),
      "f.ts": 'import t from "#s" with { type: "text" };\nexport const f = () => t;\n',
    });
    await expectRefused('"#s"', "f.ts");
  });

  it("writes its output beside f.ts, never through a symlink planted there", async () => {
    const victim = join(outer, "victim.txt");
    await writeFile(victim, "untouched");
    await writeTree(lam, { "f.ts": "export const f = () => 1;\n" });
    await symlink(victim, join(lam, COMPILED_ENTRY));
    expect(await compileTypeScript(lam)).toBe(true);
    expect(await readFile(victim, "utf8")).toBe("untouched");
    expect((await lstat(join(lam, COMPILED_ENTRY))).isFile()).toBe(true);
  });

  it("still builds what stays inside: subdirs, .., text and JSON imports, tsconfig paths, symlinks, packages", async () => {
    await writeTree(lam, {
      "package.json": '{ "dependencies": { "is-number": "^7.0.0" } }',
      "tsconfig.json":
        '{\n  // comments and trailing commas, as tsc allows\n  "compilerOptions": { "baseUrl": ".", "paths": { "@lib/*": ["./lib/*"], }, },\n}\n',
      "f.ts": [
        'import isNumber from "is-number";',
        'import { readFileSync } from "node:fs";',
        'import { twice } from "./sub/deep/twice.ts";',
        'import { inc } from "@lib/inc";',
        'import readme from "./data/readme.txt" with { type: "text" };',
        'import conf from "./data/conf.json";',
        'import linked from "./linked.ts";',
        "export const f = () => [isNumber(1), typeof readFileSync, twice(inc(1)), readme, conf.v, linked];",
        "",
      ].join("\n"),
      "sub/deep/twice.ts":
        'import { one } from "../../lib/one.ts";\nexport const twice = (n: number) => n * 2 * one;\n',
      "lib/one.ts": "export const one = 1;\n",
      "lib/inc.ts": "export const inc = (n: number) => n + 1;\n",
      "lib/real.ts": 'export default "LINKED-INSIDE";\n',
      "data/readme.txt": "README-INSIDE\n",
      "data/conf.json": '{ "v": "CONF-INSIDE" }',
    });
    await symlink("lib/real.ts", join(lam, "linked.ts"));
    expect(await compileTypeScript(lam)).toBe(true);
    const out = await readFile(join(lam, COMPILED_ENTRY), "utf8");
    for (const inside of ["README-INSIDE", "CONF-INSIDE", "LINKED-INSIDE", "n + 1", "n * 2 * one"])
      expect(out).toContain(inside);
    expect(out).toMatch(/from "is-number"/);
    expect(out).toMatch(/from "node:fs"/);
  });
});
