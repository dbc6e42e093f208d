import { cpSync } from "node:fs";
import { packageConfig } from "../../tsup.base.js";

export default packageConfig({
  entry: { index: "src/index.ts", bin: "src/bin.ts" },
  banner: { js: "#!/usr/bin/env node" },
  splitting: true,
  // The example lambdas ship with the CLI: `ol worker init` seeds a new registry with them.
  onSuccess: async () => {
    cpSync("../../examples", "dist/examples", { recursive: true });
  },
});
