import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, readlink, symlink, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { BackendUnavailableError, type Logger, SandboxCreateError } from "@openlambda/sandbox-core";
import { type Ipv4Subnet, parseSubnet, slotAddresses } from "./subnet.js";

const run = promisify(execFile);

/** Where `ip netns` keeps its namespaces (bind-mounted nsfs files). */
export const NETNS_DIR = "/run/netns";

/**
 * Host-wide claims on link addresses: `<slot>` is a symbolic link to the tag of the worker using
 * that /30. Every worker on a host carves the same default subnet, so a slot is taken by
 * creating its link, which only one can do (EEXIST for the others): two workers, or two backends
 * on one work dir, never give two links one address.
 */
export const SLOTS_DIR = "/run/ol-egress";

/** A network namespace made ahead of time for one `egress` sandbox, used once. */
export interface EgressNamespace {
  /** Its file under /run/netns, which the helper joins. */
  readonly path: string;
  readonly name: string;
  /** The sandbox's address, and the host side of its link (its gateway). */
  readonly address: string;
  readonly gateway: string;
}

export interface EgressOptions {
  /** The worker's tag (`ol-<hex>`): names of its namespaces, links and firewall chains. */
  readonly tag: string;
  /** Addresses for sandboxes' links, one /30 each (default 10.201.0.0/16). */
  readonly subnet?: string;
  /** Namespaces kept ready (default 8: ready runtimes refill in bursts). */
  readonly poolSize?: number;
  readonly log: Logger;
}

/** Names of everything one worker's egress network makes, derived from its tag. */
export function egressNames(tag: string) {
  const short = tag.replace(/^ol-/, "").slice(0, 4);
  return {
    /** Host-side links: `o<4 hex of the tag><4 hex slot>`, within IFNAMSIZ. */
    linkPrefix: `o${short}`,
    netnsPrefix: `${tag}-n`,
    chains: {
      input: `OL-${short}-IN`,
      forward: `OL-${short}-FWD`,
      output: `OL-${short}-OUT`,
      nat: `OL-${short}-NAT`,
    },
  };
}

/**
 * The `egress` network mode of SOCK sandboxes: each sandbox gets a network namespace of its own,
 * linked to the host by a veth pair (a /30 per sandbox, no bridge: sandboxes share no link),
 * routed and masqueraded to the outside world. A firewall of the worker's own chains drops
 * whatever a sandbox sends to the host itself (any of its addresses: the worker's ports, its
 * loopback is out of reach anyway), to other sandboxes, and to link-local 169.254.0.0/16, and
 * any new connection towards a sandbox. Namespaces are made in the background ahead of time,
 * so a create only joins one; each is deleted with its sandbox, never reused by another tenant.
 */
export class EgressNetwork {
  readonly #tag: string;
  readonly #subnet: Ipv4Subnet;
  readonly #poolSize: number;
  readonly #log: Logger;
  readonly #names: ReturnType<typeof egressNames>;
  readonly #ready: EgressNamespace[] = [];
  #nextSlot = 0;
  #refilling: Promise<void> | undefined;
  #prepared: Promise<void> | undefined;
  #closed = false;

  constructor(options: EgressOptions) {
    this.#tag = options.tag;
    this.#subnet = parseSubnet(options.subnet ?? "10.201.0.0/16");
    this.#poolSize = options.poolSize ?? 8;
    this.#log = options.log;
    this.#names = egressNames(options.tag);
  }

  /** Checks the host's tools, turns on forwarding and installs the firewall (idempotent). */
  prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      for (const tool of ["ip", "iptables"]) {
        await run(tool, ["-V"]).catch((error: unknown) => {
          throw new BackendUnavailableError(
            `sock backend: network egress needs ${tool} on PATH (Debian: ${tool === "ip" ? "iproute2" : "iptables"})`,
            { cause: error },
          );
        });
      }
      const forwarding = (await readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).trim();
      if (forwarding !== "1") {
        // Routing sandboxes' packets out is what egress is; the firewall below limits where.
        await writeFile("/proc/sys/net/ipv4/ip_forward", "1");
        this.#log.info({}, "turned on IPv4 forwarding for egress sandboxes");
      }
      await installFirewall(this.#names, this.#subnet.cidr);
      this.#closed = false;
    })().catch((error: unknown) => {
      this.#prepared = undefined;
      throw error;
    });
    return this.#prepared;
  }

  /** A ready namespace for one sandbox (made now when the pool is empty). */
  async take(): Promise<EgressNamespace> {
    await this.prepare();
    const ready = this.#ready.shift() ?? (await this.#make());
    void this.refill();
    return ready;
  }

  /** Deletes a sandbox's namespace (and with it both ends of its link). */
  async release(ns: EgressNamespace): Promise<void> {
    await deleteNamespace(ns.name).catch((error: unknown) =>
      this.#log.warn({ err: error, netns: ns.name }, "deleting a network namespace failed"),
    );
    await unlink(join(SLOTS_DIR, String(slotOf(ns)))).catch(() => {});
  }

  /** Makes namespaces until `poolSize` are ready; one refill at a time. */
  refill(): Promise<void> {
    this.#refilling ??= (async () => {
      try {
        while (!this.#closed && this.#ready.length < this.#poolSize) {
          const ns = await this.#make();
          if (this.#closed) await this.release(ns);
          else this.#ready.push(ns);
        }
      } catch (error) {
        this.#log.warn({ err: error }, "making a network namespace ahead of time failed");
      } finally {
        this.#refilling = undefined;
      }
    })();
    return this.#refilling;
  }

  /** Deletes the ready namespaces and the firewall; live sandboxes' namespaces are theirs. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#refilling;
    await Promise.all(this.#ready.splice(0).map((ns) => this.release(ns)));
    // The chains are the tag's: another backend on this work dir may still have sandboxes
    // behind them, which must not lose their firewall.
    if (this.#prepared && (await slotsOf(this.#tag)).length === 0)
      await removeFirewall(this.#names).catch(() => {});
    this.#prepared = undefined;
  }

  async #make(): Promise<EgressNamespace> {
    const slot = await this.#takeSlot();
    const { address, gateway, prefix } = slotAddresses(this.#subnet, slot);
    const name = `${this.#names.netnsPrefix}${slot.toString(16).padStart(4, "0")}`;
    const link = `${this.#names.linkPrefix}${slot.toString(16).padStart(4, "0")}`;
    try {
      // A namespace of a crashed earlier worker may hold the name: start clean.
      await deleteNamespace(name).catch(() => {});
      await run("ip", ["netns", "add", name]);
      await ipBatch([
        `link add ${link} type veth peer name eth0 netns ${name}`,
        `addr add ${gateway}/${prefix} dev ${link}`,
        `link set ${link} up`,
      ]);
      await ipBatch(
        [
          "link set lo up",
          `addr add ${address}/${prefix} dev eth0`,
          "link set eth0 up",
          `route add default via ${gateway}`,
        ],
        name,
      );
      return { path: `${NETNS_DIR}/${name}`, name, address, gateway };
    } catch (error) {
      await deleteNamespace(name).catch(() => {});
      await unlink(join(SLOTS_DIR, String(slot))).catch(() => {});
      throw new SandboxCreateError(`sock backend: making network namespace ${name} failed`, {
        cause: error,
      });
    }
  }

  async #takeSlot(): Promise<number> {
    const slots = this.#subnet.slots;
    await mkdir(SLOTS_DIR, { recursive: true, mode: 0o755 });
    for (let i = 0; i < slots; i++) {
      const slot = (this.#nextSlot + i) % slots;
      try {
        await symlink(this.#tag, join(SLOTS_DIR, String(slot)));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") continue;
        throw error;
      }
      this.#nextSlot = (slot + 1) % slots;
      return slot;
    }
    throw new SandboxCreateError(
      `sock backend: every egress address of ${this.#subnet.cidr} is in use (${slots} sandboxes)`,
    );
  }
}

function slotOf(ns: EgressNamespace): number {
  return Number.parseInt(ns.name.slice(-4), 16);
}

async function ipBatch(commands: readonly string[], netns?: string): Promise<void> {
  const args = netns ? ["-n", netns, "-batch", "-"] : ["-batch", "-"];
  await new Promise<void>((resolve, reject) => {
    const child = execFile("ip", args, (error, _stdout, stderr) => {
      if (error) reject(new Error(`ip ${args.join(" ")}: ${stderr.trim() || error.message}`));
      else resolve();
    });
    child.stdin?.end(`${commands.join("\n")}\n`);
  });
}

async function deleteNamespace(name: string): Promise<void> {
  await run("ip", ["netns", "delete", name]);
}

type Names = ReturnType<typeof egressNames>;

/** iptables, failing with the command and its stderr. */
async function iptables(args: readonly string[]): Promise<void> {
  try {
    await run("iptables", ["-w", ...args]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`iptables ${args.join(" ")}: ${stderr || (error as Error).message}`, {
      cause: error,
    });
  }
}

async function iptablesOk(args: readonly string[]): Promise<boolean> {
  return run("iptables", ["-w", ...args]).then(
    () => true,
    () => false,
  );
}

/** Makes `chain` in `table` exist and be empty. */
async function freshChain(table: string, chain: string): Promise<void> {
  if (!(await iptablesOk(["-t", table, "-n", "-L", chain])))
    await iptables(["-t", table, "-N", chain]);
  else await iptables(["-t", table, "-F", chain]);
}

/** Puts `rule` first in `parent` unless it is there already. */
async function jumpFirst(table: string, parent: string, rule: readonly string[]): Promise<void> {
  if (await iptablesOk(["-t", table, "-C", parent, ...rule])) return;
  await iptables(["-t", table, "-I", parent, "1", ...rule]);
}

async function installFirewall(names: Names, subnet: string): Promise<void> {
  const { chains, linkPrefix } = names;
  const ours = `${linkPrefix}+`;
  await freshChain("filter", chains.input);
  await freshChain("filter", chains.forward);
  await freshChain("filter", chains.output);
  await freshChain("nat", chains.nat);
  // To the host itself, on any of its addresses: nothing (the worker's ports, other listeners).
  await iptables(["-A", chains.input, "-j", "DROP"]);
  // Out of a sandbox: not to link-local (cloud metadata), not to any sandbox, else anywhere.
  await iptables(["-A", chains.forward, "-i", ours, "-d", "169.254.0.0/16", "-j", "DROP"]);
  await iptables(["-A", chains.forward, "-i", ours, "-d", subnet, "-j", "DROP"]);
  await iptables(["-A", chains.forward, "-i", ours, "-o", ours, "-j", "DROP"]);
  await iptables(["-A", chains.forward, "-i", ours, "-j", "ACCEPT"]);
  // Into a sandbox: answers to its own connections only.
  await iptables([
    "-A",
    chains.forward,
    "-o",
    ours,
    "-m",
    "conntrack",
    "--ctstate",
    "ESTABLISHED,RELATED",
    "-j",
    "ACCEPT",
  ]);
  await iptables(["-A", chains.forward, "-o", ours, "-j", "DROP"]);
  // The host opens no connection to a sandbox either (it talks to guests over unix sockets).
  await iptables(["-A", chains.output, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"]);
  await iptables(["-t", "nat", "-A", chains.nat, "-s", subnet, "-j", "MASQUERADE"]);
  await jumpFirst("filter", "INPUT", ["-i", ours, "-j", chains.input]);
  await jumpFirst("filter", "FORWARD", ["-i", ours, "-j", chains.forward]);
  await jumpFirst("filter", "FORWARD", ["-o", ours, "-j", chains.forward]);
  await jumpFirst("filter", "OUTPUT", ["-o", ours, "-j", chains.output]);
  await jumpFirst("nat", "POSTROUTING", ["-s", subnet, "!", "-o", ours, "-j", chains.nat]);
}

async function removeFirewall(names: Names): Promise<void> {
  const { chains, linkPrefix } = names;
  const ours = `${linkPrefix}+`;
  const jumps: [string, string, string[]][] = [
    ["filter", "INPUT", ["-i", ours, "-j", chains.input]],
    ["filter", "FORWARD", ["-i", ours, "-j", chains.forward]],
    ["filter", "FORWARD", ["-o", ours, "-j", chains.forward]],
    ["filter", "OUTPUT", ["-o", ours, "-j", chains.output]],
  ];
  for (const [table, parent, rule] of jumps) {
    while (await iptablesOk(["-t", table, "-D", parent, ...rule])) {}
  }
  // The NAT jump names the subnet, which cleanup may not know: find it by its target.
  const nat = await run("iptables", ["-w", "-t", "nat", "-S", "POSTROUTING"]).catch(() => ({
    stdout: "",
  }));
  for (const line of nat.stdout.split("\n")) {
    if (!line.startsWith("-A POSTROUTING ") || !line.endsWith(`-j ${chains.nat}`)) continue;
    const rule = line.slice("-A POSTROUTING ".length).split(" ");
    await iptablesOk(["-t", "nat", "-D", "POSTROUTING", ...rule]);
  }
  for (const [table, chain] of [
    ["filter", chains.input],
    ["filter", chains.forward],
    ["filter", chains.output],
    ["nat", chains.nat],
  ] as const) {
    await iptablesOk(["-t", table, "-F", chain]);
    await iptablesOk(["-t", table, "-X", chain]);
  }
}

/**
 * Removes what an egress network of this tag left (namespaces, links, firewall), without the
 * backend: for force cleanup after a SIGKILL. Returns how many namespaces it deleted.
 */
export async function cleanupEgress(tag: string): Promise<number> {
  const names = egressNames(tag);
  let removed = 0;
  const entries = await readdir(NETNS_DIR).catch(() => [] as string[]);
  for (const name of entries) {
    if (!name.startsWith(names.netnsPrefix)) continue;
    if (
      await deleteNamespace(name).then(
        () => true,
        () => false,
      )
    )
      removed++;
  }
  for (const slot of await slotsOf(tag)) await unlink(join(SLOTS_DIR, slot)).catch(() => {});
  if (
    await run("iptables", ["-V"]).then(
      () => true,
      () => false,
    )
  )
    await removeFirewall(names).catch(() => {});
  return removed;
}

/** The slot claims (names in SLOTS_DIR) that belong to `tag`. */
async function slotsOf(tag: string): Promise<string[]> {
  const mine: string[] = [];
  for (const name of await readdir(SLOTS_DIR).catch(() => [] as string[])) {
    if ((await readlink(join(SLOTS_DIR, name)).catch(() => "")) === tag) mine.push(name);
  }
  return mine;
}
