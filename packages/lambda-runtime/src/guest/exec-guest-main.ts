import { main } from "./exec-guest.js";

main();
