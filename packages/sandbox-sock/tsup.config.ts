import { packageConfig } from "../../tsup.base.js";

// Keep the compiled helper and reaper across rebuilds: `clean` would otherwise delete them for
// the moment between tsup and build-helper, under any test that is running sandboxes.
export default packageConfig({ clean: ["!ol-sock-helper", "!ol-sock-reaper", "!zygote/**"] });
