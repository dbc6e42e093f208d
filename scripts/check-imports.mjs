// Lint rule the formatter cannot express: a package may reach another package only through its
// public name (`@openlambda/x`), never through its `src/` or a relative path into another
// package. Shared root files (tsup.base.ts) are not packages and may be imported.
// Exits 1 listing every offending import.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const workspaces = ["packages", "apps"].flatMap((d) => {
  try {
    return readdirSync(join(root, d)).map((n) => join(root, d, n));
  } catch {
    return [];
  }
});
workspaces.push(join(root, "bench"));

const importRe =
  /(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
const problems = [];

function walk(dir, pkg) {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name === ".turbo") continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, pkg);
    else if (/\.(m|c)?[jt]sx?$/.test(name)) check(path, pkg);
  }
}

function check(file, pkg) {
  const text = readFileSync(file, "utf8");
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    if (!spec) continue;
    const where = relative(root, file);
    if (/^@openlambda\/[^/]+\/src(\/|$)/.test(spec)) {
      problems.push(`${where}: imports another package's src/ ("${spec}")`);
    } else if (spec.startsWith(".")) {
      const target = resolve(dirname(file), spec);
      const other = workspaces.find(
        (w) => w !== pkg && (target === w || target.startsWith(w + sep)),
      );
      if (other) {
        problems.push(`${where}: relative import leaves its package ("${spec}")`);
      }
    }
  }
}

for (const pkg of workspaces) {
  try {
    if (statSync(pkg).isDirectory()) walk(pkg, pkg);
  } catch {}
}
if (problems.length > 0) {
  console.error(
    `check-imports: ${problems.length} forbidden import(s)\n  ${problems.join("\n  ")}`,
  );
  process.exit(1);
}
console.log("check-imports: ok");
