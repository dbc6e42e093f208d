/**
 * The exec guest: runs commands inside a sandbox for the worker (package installs), because a
 * sandbox's only door is HTTP on /host/ol.sock. `POST /run` with `{"argv":[…],"cwd":"…","env":{…}}`
 * answers NDJSON: one `{"line":"…"}` per line of output as it comes, then `{"exit":N}`.
 * Bundled on its own: nothing but Node's own modules exists in the sandbox.
 */
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createInterface } from "node:readline";

interface RunRequest {
  readonly argv: readonly string[];
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string>>;
}

async function readJson(req: IncomingMessage): Promise<RunRequest> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as RunRequest;
}

export async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "POST" || req.url !== "/run") {
    res.writeHead(404).end();
    return;
  }
  let body: RunRequest;
  try {
    body = await readJson(req);
    if (!Array.isArray(body.argv) || body.argv.length === 0)
      throw new Error("argv must be a non-empty array");
  } catch (error) {
    res.writeHead(400, { "content-type": "text/plain" }).end(String(error));
    return;
  }
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  const [file, ...args] = body.argv as [string, ...string[]];
  const child = spawn(file, args, {
    cwd: body.cwd ?? "/host",
    env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", ...body.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const send = (value: unknown) => res.write(`${JSON.stringify(value)}\n`);
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => send({ line }));
  }
  child.once("error", (error) => {
    send({ line: `cannot run ${file}: ${error.message}` });
    res.end(`${JSON.stringify({ exit: 127 })}\n`);
  });
  child.once("close", (code, signal) => {
    res.end(`${JSON.stringify({ exit: code ?? 128, signal })}\n`);
  });
}

export function main(): void {
  const socketPath = process.env.OL_GUEST_SOCKET ?? "/host/ol.sock";
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(error));
    });
  });
  // A socket left by an earlier installer in the same scratch dir would refuse the listen.
  rmSync(socketPath, { force: true });
  server.listen(socketPath);
}
