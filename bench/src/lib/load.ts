import { once } from "node:events";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import autocannon from "autocannon";
import { SERVERS_DIR } from "./env.js";

export interface LoadResult {
  readonly connections: number;
  readonly durationS: number;
  /** Requests answered per second, mean over the run's 1-second samples. */
  readonly rps: number;
  readonly rpsSd: number;
  /** Latency, ms. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly total: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  readonly body: string;
  /** Load-generator threads (autocannon's `workers`); 0 runs in this thread. */
  readonly threads?: number;
}

/** One bounded autocannon run (time-limited, and 10 s request timeout). */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const result = await autocannon({
    url: o.url,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: o.body,
    connections: o.connections,
    duration: o.durationS,
    timeout: 10,
    ...(o.threads ? { workers: o.threads } : {}),
  });
  return {
    connections: o.connections,
    durationS: o.durationS,
    rps: result.requests.mean,
    rpsSd: result.requests.stddev,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    total: result.requests.total,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  };
}

export interface LatencyProbe {
  /** Every request's latency, ms (sub-microsecond resolution). */
  readonly samples: Float64Array;
  readonly errors: number;
}

/** Precise latencies from a client in its own worker thread (servers/latency-client.mjs). */
export async function probeLatency(o: {
  url: string;
  connections: number;
  durationMs: number;
  body: string;
  maxSamples?: number;
}): Promise<LatencyProbe> {
  const worker = new Worker(join(SERVERS_DIR, "latency-client.mjs"), {
    workerData: { ...o, maxSamples: o.maxSamples ?? 200_000 },
  });
  const timer = setTimeout(() => void worker.terminate(), o.durationMs + 30_000);
  try {
    const [msg] = (await once(worker, "message")) as [LatencyProbe];
    return msg;
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
}
