import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { baseImageTag, ensureBaseImage, imageExists, removeImage } from "../src/base-image.js";
import { engineSocketPath } from "../src/engine-address.js";
import { DockerEngine } from "../src/engine-client.js";
import { describeDocker } from "./helpers/context.js";

describeDocker("default image from the base root filesystem", () => {
  let engine: DockerEngine;
  beforeAll(() => {
    engine = new DockerEngine(engineSocketPath());
  });
  afterAll(() => engine.close());

  it("is imported once per base hash and reused afterwards", async () => {
    const source = { dir: inject("baseDir"), hash: inject("baseHash") };
    await ensureBaseImage(engine, source);
    const again = await ensureBaseImage(engine, source);
    expect(again).toEqual({ image: baseImageTag(inject("baseHash")), built: false });
  });

  it("is imported anew when the base changes, with its own tag and our labels", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ol-test-docker-tiny-"));
    const image = baseImageTag(`openlambda-test-${process.pid}-changed`);
    try {
      await mkdir(join(dir, "etc"));
      await writeFile(join(dir, "etc/hello"), "a changed base\n");
      const hash = `openlambda-test-${process.pid}-changed`;
      // Two concurrent asks make one import.
      const [a, b] = await Promise.all([
        ensureBaseImage(engine, { dir, hash }),
        ensureBaseImage(engine, { dir, hash }),
      ]);
      expect(a).toEqual({ image, built: true });
      expect(b).toBe(a);
      const { body } = await engine.json<{
        Config: { Labels: Record<string, string>; Env: string[] };
      }>({
        method: "GET",
        path: `/images/${image}/json`,
        what: "inspect",
      });
      expect(body.Config.Labels).toMatchObject({
        "org.openlambda.managed": "true",
        "org.openlambda.base-hash": hash,
      });
      expect(
        body.Config.Env.some((e) => e.startsWith("PATH=") && e.includes("/usr/local/bin")),
      ).toBe(true);
    } finally {
      await removeImage(engine, image);
      await rm(dir, { recursive: true, force: true });
    }
    expect(await imageExists(engine, image)).toBe(false);
  });

  it("without a hash, is tagged by a fingerprint of the tree that changes with it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ol-test-docker-tiny-"));
    const images: string[] = [];
    try {
      await writeFile(join(dir, "a"), "1");
      images.push((await ensureBaseImage(engine, { dir })).image);
      expect((await ensureBaseImage(engine, { dir })).built).toBe(false);
      await writeFile(join(dir, "b"), "2");
      const changed = await ensureBaseImage(engine, { dir });
      images.push(changed.image);
      expect(changed.built).toBe(true);
      expect(images[1]).not.toBe(images[0]);
    } finally {
      for (const image of images) await removeImage(engine, image);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
