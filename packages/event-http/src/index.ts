export type { Trigger } from "./trigger.js";
