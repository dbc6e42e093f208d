import { readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export async function readText(path: string): Promise<string> {
  return (await readFile(path, "utf8")).trim();
}

export async function readNumber(path: string): Promise<number> {
  const text = await readText(path);
  // v2 writes "max" for no limit.
  return text === "max" ? Number.POSITIVE_INFINITY : Number(text);
}

/** Reads `key value` lines (memory.events, cpu.stat, memory.oom_control) into a map. */
export async function readKeyed(path: string): Promise<Map<string, number>> {
  const map = new Map<string, number>();
  for (const line of (await readText(path)).split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) map.set(key, Number(value));
  }
  return map;
}

export async function write(path: string, value: string): Promise<void> {
  // Plain open(O_WRONLY|O_TRUNC) + one write: the protocol of every cgroup control file.
  await writeFile(path, value, { flag: "w" });
}

export async function readPids(procsFile: string): Promise<number[]> {
  try {
    const text = await readText(procsFile);
    return text
      ? text
          .split("\n")
          .map(Number)
          .filter((n) => n > 0)
      : [];
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** Polls `check` every few ms until it returns true; throws after `timeoutMs`. */
export async function pollUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not done after ${timeoutMs} ms`);
    await sleep(delay);
    delay = Math.min(delay * 2, 10);
  }
}

/** rmdir that tolerates "already gone" and retries while the kernel still lists exiting tasks. */
export async function removeDir(path: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await rmdir(path);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY" || Date.now() >= deadline) throw error;
      await sleep(5);
    }
  }
}

/** Child cgroup directories (names only). */
export async function childDirs(path: string): Promise<string[]> {
  try {
    const entries = await readdir(path, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/**
 * Every cgroup below `path`, children before their parent (the order they can be removed in):
 * a worker's CPU groups hold sandbox cgroups of their own.
 */
export async function descendantDirs(path: string, depth = 4): Promise<string[]> {
  const out: string[] = [];
  for (const name of await childDirs(path)) {
    const dir = join(path, name);
    if (depth > 1) out.push(...(await descendantDirs(dir, depth - 1)));
    out.push(dir);
  }
  return out;
}

export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}
