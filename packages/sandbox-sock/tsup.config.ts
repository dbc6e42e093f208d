import { packageConfig } from "../../tsup.base.js";

// Keep the compiled helper across rebuilds: `clean` would otherwise delete it for the moment
// between tsup and build-helper, under any test that is running sandboxes.
export default packageConfig({ clean: ["!ol-sock-helper", "!zygote/**"] });
