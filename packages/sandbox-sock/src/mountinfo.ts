import { readFileSync } from "node:fs";

export interface MountEntry {
  readonly id: number;
  readonly parentId: number;
  /** Where it is mounted, unescaped. */
  readonly mountPoint: string;
  readonly fsType: string;
  readonly source: string;
  /** Per-superblock options: for cgroup v1 these name the controllers (`rw,memory`). */
  readonly superOptions: readonly string[];
}

/** The kernel escapes space, tab, newline and backslash in mountinfo as `\ooo`. */
function unescapeField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) =>
    String.fromCharCode(Number.parseInt(oct, 8)),
  );
}

/** Parses /proc/self/mountinfo (see proc(5)); `text` is for tests. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const fields = line.split(" ");
    const sep = fields.indexOf("-", 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    entries.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      mountPoint: unescapeField(fields[4] ?? ""),
      fsType: fields[sep + 1] ?? "",
      source: unescapeField(fields[sep + 2] ?? ""),
      superOptions: (fields[sep + 3] ?? "").split(","),
    });
  }
  return entries;
}

export function readMountInfo(path = "/proc/self/mountinfo"): MountEntry[] {
  try {
    return parseMountInfo(readFileSync(path, "utf8"));
  } catch {
    return [];
  }
}
