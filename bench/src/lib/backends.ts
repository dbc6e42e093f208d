import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { defaultWorkerConfig, nodeGuestRuntimeDir } from "@openlambda/lambda-runtime";
import type { Sandbox, SandboxBackend, SandboxSpec } from "@openlambda/sandbox-core";
import { dockerBackend } from "@openlambda/sandbox-docker";
import { buildBaseRootfs, sockBackend } from "@openlambda/sandbox-sock";
import { SCRATCH_ROOT } from "./env.js";
import { dockerEngine } from "./peers.js";
import { ECHO_SOURCE } from "./worker.js";

/** The echo code dir every programmatic sandbox runs. */
export async function echoCodeDir(): Promise<string> {
  const dir = join(SCRATCH_ROOT, "echo-code");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "f.js"), ECHO_SOURCE);
  return dir;
}

/** A Node lambda's sandbox spec, shaped as the lambda layer makes it (same defaults). */
export function echoSpec(codeDir: string): SandboxSpec {
  const limits = defaultWorkerConfig("/tmp").limits;
  return {
    codeDir,
    runtime: "node",
    command: ["node", "/packages/ol-runtime/node-guest.js"],
    limits: {
      memoryMb: limits.node_mem_mb,
      cpuPercent: limits.cpu_percent,
      procs: limits.node_procs,
      timeoutMs: limits.runtime_sec * 1000,
    },
    env: { OL_LAMBDA_NAME: "echo" },
    network: "host",
    packages: { "ol-runtime": nodeGuestRuntimeDir() },
    labels: { lambda: "echo", bench: "1" },
  };
}

/** One request to a sandbox's guest; resolves with the status. */
export async function poke(s: Sandbox): Promise<number> {
  const res = await s.dispatcher.request({
    path: "/",
    method: "POST",
    body: '{"x":1}',
    headers: { "content-type": "application/json" },
  });
  await res.body.dump();
  return res.statusCode;
}

export async function sharedBase(): Promise<string> {
  const dir = join(SCRATCH_ROOT, "base");
  await buildBaseRootfs({ dir });
  return dir;
}

/** The SOCK backend on a scratch dir (throws saying what the host lacks). */
export async function makeSock(name: string): Promise<SandboxBackend> {
  const workDir = join(SCRATCH_ROOT, name);
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  return sockBackend({ workDir, baseDir: await sharedBase() });
}

/** Our Docker backend, ready (base image imported if needed), or why not. */
export async function makeDocker(
  name: string,
): Promise<{ backend?: SandboxBackend; why?: string; readyMs?: number }> {
  const engine = await dockerEngine();
  if (!engine.version) return { why: engine.why ?? "no engine" };
  const workDir = join(SCRATCH_ROOT, name);
  await mkdir(workDir, { recursive: true });
  const t0 = performance.now();
  const backend = dockerBackend({
    baseDir: await sharedBase(),
    workDir,
    workerId: `ol-bench-${process.pid}`,
  });
  await backend.ready();
  return { backend, readyMs: performance.now() - t0 };
}
