import { copyFile, mkdir, readdir } from "node:fs/promises";
import { packageConfig } from "../../tsup.base.js";

export default packageConfig({
  // The guests run inside sandboxes, where nothing but Node's own modules exists: each is
  // bundled on its own, without shared chunks.
  entry: {
    index: "src/index.ts",
    "node-guest": "src/guest/node-guest-main.ts",
    "exec-guest": "src/guest/exec-guest-main.ts",
  },
  // The Python guest is plain source: shipped next to the Node guests, in dist.
  async onSuccess() {
    await mkdir("dist", { recursive: true });
    for (const name of await readdir("src/guest/python")) {
      if (name.endsWith(".py") && !name.startsWith("test_"))
        await copyFile(`src/guest/python/${name}`, `dist/${name}`);
    }
  },
});
