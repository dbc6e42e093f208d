// The ceiling: a plain Node HTTP server that runs the lambda's f(event) in its own process.
// argv: HANDLER_DIR. Prints "listening PORT" once it accepts connections on 127.0.0.1.
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";

const f = createRequire(import.meta.url)(join(process.argv[2], "f.js")).f;

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
}).listen(0, "127.0.0.1", function () {
  process.stdout.write(`listening ${this.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
