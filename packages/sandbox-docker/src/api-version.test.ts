import { describe, expect, it } from "vitest";
import {
  compareApiVersions,
  MAX_API_VERSION,
  MIN_API_VERSION,
  negotiateApiVersion,
} from "./api-version.js";

describe("negotiateApiVersion", () => {
  it("compares major.minor numerically, not as text", () => {
    expect(compareApiVersions("1.9", "1.41")).toBeLessThan(0);
    expect(compareApiVersions("1.41", "1.41")).toBe(0);
    expect(compareApiVersions("2.0", "1.47")).toBeGreaterThan(0);
  });

  it("uses the engine's version when it is between ours", () => {
    expect(negotiateApiVersion("1.43", "1.12")).toBe("1.43");
    expect(negotiateApiVersion(MIN_API_VERSION)).toBe(MIN_API_VERSION);
  });

  it("caps a newer engine at the newest version this backend knows", () => {
    expect(negotiateApiVersion("1.52", "1.24")).toBe(MAX_API_VERSION);
  });

  it("refuses an engine older than the minimum", () => {
    expect(negotiateApiVersion("1.40", "1.12")).toBeUndefined();
  });

  it("refuses when the engine no longer speaks any version this backend knows", () => {
    expect(negotiateApiVersion("1.60", "1.50")).toBeUndefined();
  });
});
