import { BackendUnavailableError } from "@openlambda/sandbox-core";
import { describe, expect, it } from "vitest";
import { DEFAULT_DOCKER_SOCKET, engineSocketPath } from "./engine-address.js";

describe("engineSocketPath", () => {
  it("prefers an explicit path, then DOCKER_HOST, then the default", () => {
    expect(engineSocketPath("/x.sock", { DOCKER_HOST: "unix:///y.sock" })).toBe("/x.sock");
    expect(engineSocketPath(undefined, { DOCKER_HOST: "unix:///y.sock" })).toBe("/y.sock");
    expect(engineSocketPath(undefined, {})).toBe(DEFAULT_DOCKER_SOCKET);
    expect(engineSocketPath(undefined, { DOCKER_HOST: " " })).toBe(DEFAULT_DOCKER_SOCKET);
  });

  it("refuses a TCP DOCKER_HOST with what to do", () => {
    expect(() => engineSocketPath(undefined, { DOCKER_HOST: "tcp://10.0.0.1:2376" })).toThrow(
      BackendUnavailableError,
    );
    expect(() => engineSocketPath(undefined, { DOCKER_HOST: "tcp://10.0.0.1:2376" })).toThrow(
      /unix:\/\/\/path\/to\/docker\.sock/,
    );
  });
});
