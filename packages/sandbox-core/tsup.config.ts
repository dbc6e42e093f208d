import { packageConfig } from "../../tsup.base.js";

export default packageConfig({
  entry: { index: "src/index.ts", conformance: "src/conformance/index.ts" },
  external: ["vitest"],
  splitting: true,
});
