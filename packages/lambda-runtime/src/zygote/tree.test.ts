import { describe, expect, it } from "vitest";
import { InvalidWorkerConfigError } from "../errors.js";
import { DEFAULT_TREE, parseTree, walk } from "./tree.js";

describe("zygote tree", () => {
  it("parses OpenLambda's format with inherited packages and stable ids", () => {
    const tree = parseTree({
      packages: [],
      children: [
        { packages: ["express@^4.18.0"], children: [{ packages: ["@scope/pkg@1.2.3", "cors"] }] },
        { packages: ["@types/node"] },
      ],
    });
    const nodes = [...walk(tree)];
    expect(nodes.map((n) => n.id)).toEqual(["root", "0", "0.0", "1"]);
    expect(nodes[2]?.allPackages).toEqual([
      { name: "express", range: "^4.18.0" },
      { name: "@scope/pkg", range: "1.2.3" },
      { name: "cors", range: "*" },
    ]);
    expect(nodes[3]?.packages).toEqual([{ name: "@types/node", range: "*" }]);
    expect(nodes[2]?.depth).toBe(2);
  });

  it("refuses a root with packages and malformed nodes, naming the node", () => {
    expect(() => parseTree({ packages: ["x"] })).toThrow(/root node must have no packages/);
    expect(() => parseTree({ children: [{ packages: "x" }] })).toThrow(InvalidWorkerConfigError);
    expect(() => parseTree({ children: [1] })).toThrow(/node 0 must be an object/);
    expect(() => parseTree({ children: [{ packages: [""] }] })).toThrow(/packages must be strings/);
  });

  it("has a valid default tree", () => {
    expect([...walk(parseTree(DEFAULT_TREE))].length).toBeGreaterThan(1);
  });
});
