import { packageConfig } from "../../tsup.base.js";

export default packageConfig({
  // node-guest.js runs inside sandboxes, where nothing but Node's own modules exists: it is
  // bundled on its own, without shared chunks.
  entry: { index: "src/index.ts", "node-guest": "src/guest/node-guest-main.ts" },
});
