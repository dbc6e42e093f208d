import { describe, expect, it } from "vitest";
import { InvalidRequirementsError } from "../errors.js";
import { normalizePackageName, parseRequirements } from "./requirements.js";

describe("requirements.txt", () => {
  it("normalises names as PEP 503 says", () => {
    expect(normalizePackageName("Foo.Bar__baz-Qux")).toBe("foo-bar-baz-qux");
    expect(normalizePackageName("requests")).toBe("requests");
  });

  it("parses pins, extras, comments and blank lines into sorted, deduplicated packages", () => {
    const text =
      "# deps\nRequests==2.31.0  # http\n\nflask[async] == 3.0.0\nrequests==2.31.0\nfoo==1.0+local\n";
    expect(parseRequirements(text, "l")).toEqual([
      { name: "flask", version: "3.0.0", dir: "flask-3.0.0" },
      { name: "foo", version: "1.0+local", dir: "foo-1.0_local" },
      { name: "requests", version: "2.31.0", dir: "requests-2.31.0" },
    ]);
  });

  it.each([
    ["flask>=2", /not pinned/],
    ["flask", /not pinned/],
    ["-r other.txt", /options are not supported/],
    ["flask==2.*", /not an exact version/],
    ['flask==2.0; python_version < "3"', /markers/],
    ["git+https://x/y.git", /not pinned/],
  ])("refuses %s with the line", (line, why) => {
    expect(() => parseRequirements(`ok==1\n${line}\n`, "lam")).toThrow(InvalidRequirementsError);
    expect(() => parseRequirements(`ok==1\n${line}\n`, "lam")).toThrow(why);
    expect(() => parseRequirements(`ok==1\n${line}\n`, "lam")).toThrow(
      /lambda lam: requirements.txt line 2/,
    );
  });

  it("refuses one name pinned to two versions", () => {
    expect(() => parseRequirements("a==1\nA==2\n", "l")).toThrow(/already pinned to 1/);
  });
});
