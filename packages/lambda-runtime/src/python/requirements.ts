import { InvalidRequirementsError } from "../errors.js";

/** One pinned requirement: `name==version`, the name normalised as PEP 503 says. */
export interface Requirement {
  /** PEP 503 normalised: lower case, runs of `-`, `_`, `.` become one `-`. */
  readonly name: string;
  readonly version: string;
  /** `name-version`: the package's directory in the shared package dir and under /packages. */
  readonly dir: string;
}

/** PEP 503: `re.sub(r"[-_.]+", "-", name).lower()`. */
export function normalizePackageName(name: string): string {
  return name.replace(/[-_.]+/g, "-").toLowerCase();
}

const NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
// PEP 440 public versions and local labels; no wildcards (`==1.*` is not a pin).
const VERSION = /^[A-Za-z0-9][A-Za-z0-9.+!_-]*$/;

/**
 * Parses requirements.txt: one `name==version` (or `name[extras]==version`) per line, `#`
 * comments, blank lines. Anything that is not a pin (ranges, URLs, `-r`, `-e`, options) is
 * refused with the line, so every lambda's packages are exactly known and shared by version.
 * A name given twice must give the same version.
 */
export function parseRequirements(text: string, lambda: string): Requirement[] {
  const out = new Map<string, Requirement>();
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") continue;
    const bad = (why: string): never => {
      throw new InvalidRequirementsError(
        `lambda ${lambda}: requirements.txt line ${i + 1} ("${line}"): ${why}`,
      );
    };
    if (line.startsWith("-")) bad("options are not supported; pin each package as name==version");
    const m = /^([^\s[=<>!~;@]+)\s*(\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*(;.*)?$/.exec(line);
    if (!m) bad("not pinned: write name==version");
    const [, rawName, , version, marker] = m as unknown as [string, string, string, string, string];
    if (marker) bad("environment markers are not supported");
    if (!NAME.test(rawName)) bad("not a valid package name");
    if (!VERSION.test(version) || version.includes("*")) bad("not an exact version");
    const name = normalizePackageName(rawName);
    const prev = out.get(name);
    if (prev && prev.version !== version)
      bad(`${name} is already pinned to ${prev.version} on an earlier line`);
    out.set(name, {
      name,
      version,
      dir: `${name}-${version.toLowerCase().replace(/[^a-z0-9._-]/g, "_")}`,
    });
  }
  return [...out.values()].sort((a, b) => a.name.localeCompare(b.name));
}
