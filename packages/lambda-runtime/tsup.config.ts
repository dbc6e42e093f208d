import { packageConfig } from "../../tsup.base.js";

export default packageConfig({
  // The guests run inside sandboxes, where nothing but Node's own modules exists: each is
  // bundled on its own, without shared chunks.
  entry: {
    index: "src/index.ts",
    "node-guest": "src/guest/node-guest-main.ts",
    "exec-guest": "src/guest/exec-guest-main.ts",
  },
});
