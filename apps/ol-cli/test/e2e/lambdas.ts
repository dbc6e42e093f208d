/**
 * The lambdas the end-to-end tests deploy. Everything here must stay harmless even if
 * isolation failed and it ran as root on the host: a lambda only ever kills its own process
 * and writes nowhere (not even /tmp).
 */
import type { LambdaFiles } from "./harness.js";

/** A random id per loaded module: tells sandboxes (and fresh starts) apart. */
const BOOT = `const BOOT = Math.random().toString(36).slice(2);\n`;
const SLEEP = `const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));\n`;

/** f style, CommonJS: what came in, and where. */
export const echo: LambdaFiles = {
  "f.js": `exports.f = (event, context) => ({ event, method: context.method, path: context.path, lambda: context.lambda });\n`,
};

/** fetch style: echoes the request, streams on /stream. */
export const web: LambdaFiles = {
  "f.mjs": `export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/stream") {
      const enc = new TextEncoder();
      let i = 0;
      const body = new ReadableStream({
        async pull(controller) {
          if (i === 3) return controller.close();
          controller.enqueue(enc.encode("chunk" + i++ + "\\n"));
          await new Promise((r) => setTimeout(r, 20));
        },
      });
      return new Response(body, { headers: { "content-type": "text/plain" } });
    }
    return Response.json(
      {
        method: request.method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        body: await request.text(),
        header: request.headers.get("x-test"),
      },
      { status: 201, headers: { "x-lambda": "web" } },
    );
  },
};
`,
};

/** Only GET and POST, as OpenLambda's ol.yaml says it. */
export const methods: LambdaFiles = {
  "f.js": `exports.f = () => "allowed";\n`,
  "ol.yaml": `triggers:\n  http:\n    - method: GET\n    - method: POST\n`,
};

export const env: LambdaFiles = {
  "f.mjs": `export function f() {
  return { greeting: process.env.GREETING, answer: process.env.ANSWER, name: process.env.OL_LAMBDA_NAME };
}
`,
  "ol.yaml": `environment:\n  GREETING: "Hello from ol.yaml"\n  ANSWER: 42\n`,
};

export const boom: LambdaFiles = {
  "f.js": `exports.f = () => { throw new Error("kaboom: this lambda fails on purpose"); };\n`,
};

/** Sleeps `event.ms`; its ol.yaml limits a call to 1 s. */
export const sleepy: LambdaFiles = {
  "f.js": `${BOOT}${SLEEP}exports.f = async (event) => { await sleep(event.ms ?? 0); return { boot: BOOT }; };\n`,
  "ol.yaml": `limits:\n  timeout: 1\n`,
};

/** Kills its own process (and only that) mid-request, or hangs for the test to kill it. */
export const crash: LambdaFiles = {
  "f.js": `${BOOT}${SLEEP}exports.f = async (event) => {
  if (event.crash) process.kill(process.pid, "SIGKILL");
  if (event.hang) await sleep(event.hang);
  return { boot: BOOT };
};
`,
};

/** Sleeps `event.ms` (default 500), then says which sandbox it ran in. */
export const slow: LambdaFiles = {
  "f.js": `${BOOT}${SLEEP}exports.f = async (event) => { await sleep(event.ms ?? 500); return { boot: BOOT }; };\n`,
};

/**
 * Version `v` of a lambda whose answer comes from two files: a half-installed version would
 * answer with two different numbers. A padding file makes extraction take a little while.
 */
export function versioned(v: number): LambdaFiles {
  return {
    "f.js": `const data = require("./data.json");\nexports.f = () => ({ code: ${v}, data: data.v });\n`,
    "data.json": JSON.stringify({ v }),
    "pad.txt": `${String(v)}`.repeat(256 * 1024),
  };
}
