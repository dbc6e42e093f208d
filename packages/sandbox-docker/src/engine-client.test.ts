import { link, mkdtemp, rename, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackendError, BackendUnavailableError } from "@openlambda/sandbox-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerBackend } from "./docker-backend.js";
import { DockerEngine, engineStatusOf } from "./engine-client.js";

let dir: string;
const servers: Server[] = [];

/** A fake engine on a unix socket: `/version` answers `apiVersion`, everything else `routes`. */
async function fakeEngine(apiVersion: string, routes: Record<string, [number, unknown]> = {}) {
  const socketPath = join(dir, `engine-${servers.length}.sock`);
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const path = (req.url ?? "").replace(/^\/v[0-9.]+/, "").replace(/\?.*$/, "");
    const [status, body] =
      req.url === "/version"
        ? [200, { Version: "99.0", ApiVersion: apiVersion, MinAPIVersion: "1.12" }]
        : (routes[`${req.method} ${path}`] ?? [404, { message: `page not found: ${path}` }]);
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { socketPath, seen };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ol-test-docker-unit-"));
});

afterAll(async () => {
  for (const s of servers) s.close();
  await rm(dir, { recursive: true, force: true });
});

describe("DockerEngine", () => {
  it("says to install and start Docker when there is no socket", async () => {
    const engine = new DockerEngine(join(dir, "missing.sock"));
    const error = await engine.version().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(
      /no Docker engine socket at .*missing\.sock.*apt-get install docker\.io.*dockerd.*DOCKER_HOST/,
    );
    await engine.close();
  });

  it("says to start dockerd when the socket exists but nothing listens", async () => {
    // A socket file nobody listens on, as a crashed dockerd leaves: keep a hard link to a
    // listening socket's file, close the listener (which unlinks its name), move the link back.
    const socketPath = join(dir, "stale.sock");
    const listener = createNetServer();
    await new Promise<void>((resolve) => listener.listen(socketPath, resolve));
    await link(socketPath, `${socketPath}.keep`);
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    await rename(`${socketPath}.keep`, socketPath);
    const engine = new DockerEngine(socketPath);
    const error = await engine.version().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/nothing listens on .*start the Docker engine/);
    await engine.close();
  });

  it("refuses an engine whose API is too old, naming the versions and the fix", async () => {
    const { socketPath } = await fakeEngine("1.38");
    const engine = new DockerEngine(socketPath);
    const error = await engine.version().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(
      /API 1\.12\.\.1\.38.*needs API 1\.41 or newer.*upgrade/,
    );
    await engine.close();
  });

  it("negotiates the version once and prefixes every call with it", async () => {
    const { socketPath, seen } = await fakeEngine("1.43", { "GET /_ping": [200, "OK"] });
    const engine = new DockerEngine(socketPath);
    expect((await engine.version()).apiVersion).toBe("1.43");
    await engine.raw({ method: "GET", path: "/_ping", what: "ping" });
    await engine.raw({
      method: "GET",
      path: "/_ping",
      what: "ping",
      query: { a: true, b: ["x", "y"] },
    });
    expect(seen).toEqual(["GET /version", "GET /v1.43/_ping", "GET /v1.43/_ping?a=1&b=x&b=y"]);
    await engine.close();
  });

  it("turns an engine error into BackendError carrying the engine's message and status", async () => {
    const { socketPath } = await fakeEngine("1.41", {
      "POST /containers/create": [404, { message: "No such image: nope:latest" }],
    });
    const engine = new DockerEngine(socketPath);
    const error = await engine
      .json({ method: "POST", path: "/containers/create", json: {}, what: "create container" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as Error).message).toBe(
      "docker engine: create container: No such image: nope:latest",
    );
    expect(engineStatusOf(error)).toBe(404);
    await engine.close();
  });
});

describe("dockerBackend without an engine", () => {
  it("fails ready() and create() with BackendUnavailableError when DOCKER_HOST names no socket", async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = `unix://${join(dir, "nowhere.sock")}`;
    try {
      const backend = dockerBackend({ image: "anything" });
      await expect(backend.ready()).rejects.toBeInstanceOf(BackendUnavailableError);
      await expect(backend.ready()).rejects.toThrow(/nowhere\.sock/);
      const spec = {
        codeDir: dir,
        runtime: "node" as const,
        command: ["node", "x.mjs"],
        limits: { memoryMb: 64, cpuPercent: 100, procs: 8, timeoutMs: 1000 },
      };
      await expect(backend.create(spec)).rejects.toBeInstanceOf(BackendUnavailableError);
      await backend.cleanup();
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });
});

describe("dockerBackend options", () => {
  it("refuses to run guests as root", () => {
    expect(() => dockerBackend({ image: "x", uidRange: { first: 0, count: 10 } })).toThrow(
      /positive integers/,
    );
  });

  it("claims pause and every limit, and no fork", () => {
    const { capabilities } = dockerBackend({ image: "x" });
    expect(capabilities).toMatchObject({
      fork: false,
      pause: true,
      limits: { memory: true, cpu: true, procs: true },
      networkModes: ["host", "none"],
      uidPerSandbox: true,
    });
  });
});
