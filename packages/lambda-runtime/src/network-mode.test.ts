import { describe, expect, it } from "vitest";
import { InvalidWorkerConfigError } from "./errors.js";
import { defaultNetwork } from "./network-mode.js";

const sock = { networkModes: ["egress", "host", "none"] as const };
const docker = { networkModes: ["host", "none"] as const };

describe("defaultNetwork", () => {
  it("auto is egress where the backend has it, else host", () => {
    expect(defaultNetwork({ default_network: "auto", sandbox: "sock" }, sock)).toBe("egress");
    expect(defaultNetwork({ default_network: "auto", sandbox: "docker" }, docker)).toBe("host");
  });

  it("takes an explicit mode the backend has, and refuses one it lacks naming the key", () => {
    expect(defaultNetwork({ default_network: "none", sandbox: "docker" }, docker)).toBe("none");
    expect(() => defaultNetwork({ default_network: "egress", sandbox: "docker" }, docker)).toThrow(
      InvalidWorkerConfigError,
    );
    expect(() => defaultNetwork({ default_network: "egress", sandbox: "docker" }, docker)).toThrow(
      /default_network egress is not supported by the docker backend/,
    );
  });
});
