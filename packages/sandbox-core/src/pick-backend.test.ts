import { describe, expect, it } from "vitest";
import { UnknownBackendError } from "./errors.js";
import { pickBackend } from "./pick-backend.js";

describe("pickBackend", () => {
  it("returns the named backend and refuses an unknown name, listing the known ones", () => {
    const factories = { fake: () => "the fake" };
    expect(pickBackend("fake", factories)).toBe("the fake");
    expect(() => pickBackend("toString", factories)).toThrow(UnknownBackendError);
    expect(() => pickBackend("gvisor", factories)).toThrow(
      'unknown sandbox backend "gvisor" (available: fake)',
    );
  });
});
