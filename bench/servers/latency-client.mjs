// A latency client run in a worker thread: `connections` keep-alive loops, each sending the
// next request when the last answered, for `durationMs` (and at most `maxSamples` requests).
// Posts back every latency in ms with sub-microsecond resolution (autocannon keeps whole ms).
import { performance } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import { Pool } from "undici";

const { url, connections, durationMs, maxSamples, body } = workerData;
const u = new URL(url);
const pool = new Pool(u.origin, { connections, pipelining: 1 });
const samples = new Float64Array(maxSamples);
let n = 0;
let errors = 0;
const deadline = performance.now() + durationMs;

async function loop() {
  while (performance.now() < deadline && n < maxSamples) {
    const t0 = performance.now();
    try {
      const res = await pool.request({
        path: u.pathname + u.search,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      await res.body.dump();
      if (res.statusCode >= 300) errors++;
      else if (n < maxSamples) samples[n++] = performance.now() - t0;
    } catch {
      errors++;
    }
  }
}

await Promise.all(Array.from({ length: connections }, loop));
await pool.close();
parentPort.postMessage({ samples: samples.slice(0, n), errors });
