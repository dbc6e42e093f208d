/**
 * Calling lambdas through a real worker: both handler styles, paths, methods, environment,
 * errors, timeouts, crashes, scale-out and pausing (issue 4's "Done when").
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { describeBackends, Worker } from "./harness.js";
import * as L from "./lambdas.js";

const METHOD_TEXT = "HTTP method not allowed. Sent: PUT, Allowed: [GET POST]";

await describeBackends("invoking lambdas", (backend) => {
  let w: Worker;
  beforeAll(async () => {
    w = await Worker.start({
      backend,
      // One call per sandbox at a time, so concurrent calls must scale out.
      options: ["pause_idle_ms=100", "max_instances=4", "instance_concurrency=1"],
      lambdas: {
        echo: L.echo,
        web: L.web,
        methods: L.methods,
        env: L.env,
        boom: L.boom,
        sleepy: L.sleepy,
        crash: L.crash,
        slow: L.slow,
      },
    });
  });
  afterAll(async () => {
    await w?.stop();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === "fail" && w) console.error(`worker output:\n${w.tail()}`);
  });

  it("answers /status, /stats and /metrics", async () => {
    const status = await w.fetch("/status");
    expect([status.status, status.text]).toEqual([200, "ready"]);
    const stats = await w.fetch("/stats");
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({ "mem-pool.total-mb": expect.any(Number) });
    const metrics = await w.fetch("/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain("ol_mem_pool_total_mb");
  });

  it("f style: the JSON body in, JSON out; an empty body is {}", async () => {
    const res = await w.run("echo", { body: { a: 1, b: ["x"] } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.json).toEqual({
      event: { a: 1, b: ["x"] },
      method: "POST",
      path: "/",
      lambda: "echo",
    });
    expect((await w.run("echo", { body: '"hi"' })).json).toMatchObject({ event: "hi" });
    expect((await w.run("echo")).json).toMatchObject({ event: {}, method: "GET" });
  });

  it("f style: the sub-path and the query reach the lambda", async () => {
    const res = await w.run("echo/sub/path?q=1&r=two", { body: {} });
    expect(res.json).toMatchObject({ path: "/sub/path?q=1&r=two" });
    expect((await w.run("echo?only=query")).json).toMatchObject({ path: "/?only=query" });
  });

  it("fetch style: method, path, query, headers and body in; status, headers and body out", async () => {
    const res = await w.run("web/items/7?fields=name&x=1", {
      method: "PUT",
      body: "hello body",
      headers: { "x-test": "yes", "content-type": "text/plain" },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("x-lambda")).toBe("web");
    expect(res.json).toEqual({
      method: "PUT",
      path: "/items/7",
      query: { fields: "name", x: "1" },
      body: "hello body",
      header: "yes",
    });
    const root = await w.run("web?x=2");
    expect(root.json).toMatchObject({ method: "GET", path: "/", query: { x: "2" } });
  });

  it("fetch style: a streamed body arrives whole", async () => {
    const res = await w.run("web/stream");
    expect(res.status).toBe(200);
    expect(res.text).toBe("chunk0\nchunk1\nchunk2\n");
  });

  it("ol.yaml methods: allowed ones pass, others get OpenLambda's 405 text", async () => {
    expect((await w.run("methods")).json).toBe("allowed");
    expect((await w.run("methods", { body: {} })).json).toBe("allowed");
    const put = await w.run("methods", { method: "PUT", body: "{}" });
    expect(put.status).toBe(405);
    expect(put.text).toBe(METHOD_TEXT);
    const del = await w.run("methods", { method: "DELETE" });
    expect([del.status, del.text]).toEqual([
      405,
      "HTTP method not allowed. Sent: DELETE, Allowed: [GET POST]",
    ]);
  });

  it("ol.yaml environment reaches process.env", async () => {
    const res = await w.run("env");
    expect(res.json).toEqual({ greeting: "Hello from ol.yaml", answer: "42", name: "env" });
  });

  it("a thrown error gives 500 with its message", async () => {
    const res = await w.run("boom", { body: {} });
    expect(res.status).toBe(500);
    expect(res.text).toContain("kaboom: this lambda fails on purpose");
  });

  it("invalid JSON gives 400", async () => {
    const res = await w.run("echo", { body: "{not json" });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: { code: "OL_INVALID_JSON" } });
  });

  it("an unknown lambda gives 404", async () => {
    const res = await w.run("no-such-lambda");
    expect(res.status).toBe(404);
    expect(res.json).toMatchObject({ error: { code: "OL_LAMBDA_NOT_FOUND" } });
  });

  it("a call past ol.yaml's timeout gives 502, and the next call gets a fresh sandbox", async () => {
    const before = await w.run("sleepy", { body: { ms: 0 } });
    expect(before.status).toBe(200);
    const late = await w.run("sleepy", { body: { ms: 4000 } });
    expect(late.status).toBe(502);
    expect(late.json).toMatchObject({ error: { code: "OL_LAMBDA_TIMEOUT" } });
    expect(late.ms).toBeLessThan(3500);
    const after = await w.run("sleepy", { body: { ms: 0 } });
    expect(after.status).toBe(200);
    expect((after.json as { boot: string }).boot).not.toBe((before.json as { boot: string }).boot);
  });

  it("a guest killed mid-request gives 502, and the next call gets a fresh sandbox", async () => {
    const before = await w.run("crash", { body: {} });
    expect(before.status).toBe(200);
    const call = w.run("crash", { body: { hang: 20_000 } });
    const view = await w.waitFor("crash to be busy", (v) =>
      v.lambdas.some((l) => l.name === "crash" && l.instances.some((i) => i.invocations === 2)),
    );
    const sandbox = view.lambdas.find((l) => l.name === "crash")!.instances[0]!.sandbox!;
    await new Promise((r) => setTimeout(r, 200));
    expect(await w.killSandbox(sandbox.id)).toBeGreaterThan(0);
    const killed = await call;
    expect(killed.status).toBe(502);
    expect(killed.json).toMatchObject({ error: { code: "OL_LAMBDA_CRASHED" } });
    expect(killed.ms).toBeLessThan(15_000);
    const after = await w.run("crash", { body: {} });
    expect(after.status).toBe(200);
    expect((after.json as { boot: string }).boot).not.toBe((before.json as { boot: string }).boot);
  });

  it("a lambda that kills its own process gives 502, and the next call gets a fresh sandbox", async () => {
    const before = await w.run("crash", { body: {} });
    expect(before.status).toBe(200);
    const killed = await w.run("crash", { body: { crash: true } });
    expect(killed.status).toBe(502);
    expect(killed.json).toMatchObject({ error: { code: "OL_LAMBDA_CRASHED" } });
    const after = await w.run("crash", { body: {} });
    expect(after.status).toBe(200);
    expect((after.json as { boot: string }).boot).not.toBe((before.json as { boot: string }).boot);
  });

  it("concurrent calls to one slow lambda scale out to several sandboxes", async () => {
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const live = (await w.instances("slow")).filter((i) => i.sandbox !== null).length;
        peak = Math.max(peak, live);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const calls = await Promise.all(
      Array.from({ length: 10 }, () => w.run("slow", { body: { ms: 600 } })),
    );
    sampling = false;
    await sampler;
    expect(
      calls.filter((c) => c.status !== 200).map((c) => `${c.status} ${c.text}`),
      "failed calls",
    ).toEqual([]);
    const boots = new Set(calls.map((c) => (c.json as { boot: string }).boot));
    expect(boots.size).toBeGreaterThanOrEqual(2);
    expect(boots.size).toBeLessThanOrEqual(4);
    expect(peak).toBeGreaterThanOrEqual(2);
    expect(peak).toBeLessThanOrEqual(4);
  });

  it("an idle lambda's sandbox is paused (frozen by the kernel) and resumes on the next call", async () => {
    expect((await w.run("env")).status).toBe(200);
    const view = await w.waitFor("env's sandbox to be paused", (v) =>
      (v.lambdas.find((l) => l.name === "env")?.instances ?? []).some(
        (i) => i.state === "paused" && i.sandbox?.state === "paused",
      ),
    );
    const instance = view.lambdas
      .find((l) => l.name === "env")!
      .instances.find((i) => i.state === "paused")!;
    expect(await w.kernelSaysPaused(instance.sandbox!.id)).toBe(true);
    expect((await w.run("env")).status).toBe(200);
    const again = await w.instances("env");
    expect(again.map((i) => i.sandbox?.id)).toContain(instance.sandbox!.id);
  });
});
