import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LambdaBuildError } from "../errors.js";
import { tempDir, writeTree } from "../testing/fixtures.js";
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
