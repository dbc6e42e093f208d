import { InvalidSpecError } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { parseSubnet, slotAddresses } from "./subnet.js";

describe("egress subnet", () => {
  it("carves a /16 into /30 links: gateway .1 and sandbox .2 of each", () => {
    const s = parseSubnet("10.201.0.0/16");
    expect(s.slots).toBe(16384);
    expect(slotAddresses(s, 0)).toEqual({
      gateway: "10.201.0.1",
      address: "10.201.0.2",
      prefix: 30,
    });
    expect(slotAddresses(s, 64)).toEqual({
      gateway: "10.201.1.1",
      address: "10.201.1.2",
      prefix: 30,
    });
    expect(slotAddresses(s, 16383).address).toBe("10.201.255.254");
    expect(() => slotAddresses(s, 16384)).toThrow(RangeError);
  });

  it.each([
    ["10.201.0.0", /look like/],
    ["10.201.0.0/33", /\/8 to \/28/],
    ["10.300.0.0/16", /past 255/],
    ["10.201.0.0/30", /\/8 to \/28/],
    ["10.201.1.0/16", /not the start/],
    ["127.0.0.0/8", /loopback and link-local/],
    ["169.254.0.0/16", /loopback and link-local/],
  ])("refuses %s", (cidr, message) => {
    expect(() => parseSubnet(cidr)).toThrow(InvalidSpecError);
    expect(() => parseSubnet(cidr)).toThrow(message);
  });
});
