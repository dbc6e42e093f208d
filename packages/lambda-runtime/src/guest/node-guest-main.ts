import { main } from "./node-guest.js";

main().catch((error: unknown) => {
  console.error("ol-node-guest: failed to start", error);
  process.exit(1);
});
