// A minimal Node guest: f(event) served over HTTP/1.1 on a unix socket, no isolation.
// argv: HANDLER_DIR SOCKET. Prints "listening" once it accepts connections.
import { rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";

const [handlerDir, socketPath] = process.argv.slice(2);
const f = createRequire(import.meta.url)(join(handlerDir, "f.js")).f;
rmSync(socketPath, { force: true });

createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    try {
      const text = Buffer.concat(chunks).toString("utf8");
      const out = JSON.stringify(await f(text ? JSON.parse(text) : {}));
      res.writeHead(200, { "content-type": "application/json" }).end(out);
    } catch (error) {
      res.writeHead(500).end(String(error));
    }
  });
}).listen(socketPath, () => process.stdout.write("listening\n"));
process.on("SIGTERM", () => process.exit(0));
