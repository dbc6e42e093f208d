// The floor of any proxying design: a minimal reverse proxy from 127.0.0.1 to a guest's unix
// socket, keep-alive, streaming both ways. argv: SOCKET. Prints "listening PORT".
import { Agent, createServer, request } from "node:http";

const socketPath = process.argv[2];
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

createServer((req, res) => {
  const headers = { ...req.headers };
  delete headers.connection;
  const upstream = request(
    { socketPath, agent, method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstream.on("error", (error) => {
    if (!res.headersSent) res.writeHead(502);
    res.end(String(error));
  });
  req.pipe(upstream);
}).listen(0, "127.0.0.1", function () {
  process.stdout.write(`listening ${this.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
