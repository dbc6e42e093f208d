import { packageConfig } from "../../tsup.base.js";

export default packageConfig({
  entry: { index: "src/index.ts", bin: "src/bin.ts" },
  banner: { js: "#!/usr/bin/env node" },
  splitting: true,
});
