import { runSandboxConformance } from "../conformance/index.js";
import { fakeBackend } from "./fake-backend.js";

runSandboxConformance({
  name: "fake",
  backend: () => fakeBackend(),
  skip: {
    "unprivileged-guest": "the fake backend runs guests in the test process, without isolation",
  },
});
