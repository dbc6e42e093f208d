import { runSandboxConformance } from "../conformance/index.js";
import { fakeBackend } from "./fake-backend.js";

runSandboxConformance({
  name: "fake",
  backend: () => fakeBackend(),
  skip: {
    "host-paths-hidden": "the fake's guest runs in the test process and sees the host's /proc",
    "unprivileged-guest": "the fake backend runs guests in the test process, without isolation",
  },
});
