import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { baseImageTag } from "../../src/base-image.js";
import { SCRATCH_ROOT_PREFIX } from "../../src/docker-backend.js";
import { engineSocketPath } from "../../src/engine-address.js";
import { DockerEngine } from "../../src/engine-client.js";
import { LABEL_MANAGED, LABEL_WORKER, labelFilter } from "../../src/labels.js";

/**
 * What the docker tests would have left behind: containers of the run's worker, image tags of
 * ours other than the base's, scratch roots that were not there before the run.
 */
export async function leftovers(
  workerId: string,
  baseHash: string,
  before: { readonly roots: readonly string[]; readonly imageTags: readonly string[] },
): Promise<string[]> {
  const engine = new DockerEngine(engineSocketPath());
  try {
    const problems: string[] = [];
    const { body: containers } = await engine.json<{ Id: string; Names?: string[] }[]>({
      method: "GET",
      path: "/containers/json",
      query: { all: true, filters: labelFilter({ [LABEL_WORKER]: workerId }) },
      what: "list test containers",
    });
    for (const c of containers) problems.push(`container ${c.Names?.[0] ?? c.Id}`);
    const base = baseImageTag(baseHash);
    for (const tag of await ourImageTags(engine)) {
      // Images of other bases from before the run (an operator's worker) are not the tests'.
      if (tag !== base && !before.imageTags.includes(tag)) problems.push(`image ${tag}`);
    }
    for (const r of await scratchRoots()) {
      if (!before.roots.includes(r)) problems.push(`scratch root ${tmpdir()}/${r}`);
    }
    return problems;
  } finally {
    await engine.close();
  }
}

/** Tags of every image labelled as ours. */
export async function ourImageTags(engine: DockerEngine): Promise<string[]> {
  const { body: images } = await engine.json<{ RepoTags?: string[] | null }[]>({
    method: "GET",
    path: "/images/json",
    query: { filters: labelFilter({ [LABEL_MANAGED]: "true" }) },
    what: "list our images",
  });
  return images.flatMap((i) => i.RepoTags ?? []).sort();
}

/** `ol-docker-*` scratch roots in the temp dir. */
export async function scratchRoots(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => n.startsWith(SCRATCH_ROOT_PREFIX)).sort();
}
