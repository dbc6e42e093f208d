import { InvalidSpecError } from "@openlambda/sandbox-core";

/** An IPv4 block carved into /30s, one per sandbox link: gateway .1, sandbox .2 of each. */
export interface Ipv4Subnet {
  readonly cidr: string;
  readonly base: number;
  readonly slots: number;
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

export function parseSubnet(cidr: string): Ipv4Subnet {
  const m = DOTTED.exec(cidr);
  const bad = (why: string): never => {
    throw new InvalidSpecError(`egress subnet ${JSON.stringify(cidr)}: ${why}`);
  };
  if (!m) return bad("must look like 10.201.0.0/16");
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255)) bad("an octet is past 255");
  if (prefix < 8 || prefix > 28) bad("the prefix must be /8 to /28 (a /30 per sandbox)");
  const base = octets.reduce((acc, o) => acc * 256 + o, 0);
  const size = 2 ** (32 - prefix);
  if (base % size !== 0) bad(`the address is not the start of a /${prefix}`);
  // Link-local and loopback are what egress keeps sandboxes away from.
  const first = octets[0] as number;
  if (first === 127 || (first === 169 && octets[1] === 254))
    bad("loopback and link-local are refused");
  return { cidr, base, slots: size / 4 };
}

function dotted(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}

/** The link addresses of one slot: the host's end (gateway) and the sandbox's, in a /30. */
export function slotAddresses(
  subnet: Ipv4Subnet,
  slot: number,
): { gateway: string; address: string; prefix: number } {
  if (!Number.isInteger(slot) || slot < 0 || slot >= subnet.slots)
    throw new RangeError(`slot ${slot} outside ${subnet.cidr}`);
  const start = subnet.base + slot * 4;
  return { gateway: dotted(start + 1), address: dotted(start + 2), prefix: 30 };
}
