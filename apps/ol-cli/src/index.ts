export { buildCli, EXIT, main, reportError } from "./main.js";
