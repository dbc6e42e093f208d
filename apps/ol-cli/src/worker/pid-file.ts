import { readFile, rm, writeFile } from "node:fs/promises";
import type { WorkerLayout } from "./layout.js";

export interface PidRecord {
  readonly pid: number;
  readonly url: string;
  readonly startedAt: string;
  /**
   * The `-o key=value` overrides the worker runs with: `status`, `down` and `force-cleanup`
   * need the config it really has (`-o sandbox=docker` leaves containers, not cgroups).
   */
  readonly options?: readonly string[];
}

export async function readPidFile(layout: WorkerLayout): Promise<PidRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(layout.pid, "utf8")) as PidRecord;
    return Number.isInteger(record.pid) ? record : undefined;
  } catch {
    return undefined;
  }
}

/** The recorded worker, if its process still lives (and is a worker, not a reused pid). */
export async function liveWorker(layout: WorkerLayout): Promise<PidRecord | undefined> {
  const record = await readPidFile(layout);
  if (!record) return undefined;
  try {
    process.kill(record.pid, 0);
  } catch {
    return undefined;
  }
  const cmdline = await readFile(`/proc/${record.pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.includes("worker") ? record : undefined;
}

export async function writePidFile(layout: WorkerLayout, record: PidRecord): Promise<void> {
  await writeFile(layout.pid, `${JSON.stringify(record)}\n`, { mode: 0o644 });
}

export async function removePidFile(layout: WorkerLayout, pid?: number): Promise<void> {
  if (pid !== undefined && (await readPidFile(layout))?.pid !== pid) return;
  await rm(layout.pid, { force: true });
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
