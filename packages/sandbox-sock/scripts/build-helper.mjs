// Compiles native/ol-sock-helper.c and native/ol-sock-reaper.c into dist/ so the published
// package ships ready binaries. Static against glibc when the host has libc.a (they then run on
// any linux-x64), else dynamic.
// Off Linux, or without a C compiler, it warns and skips: the TypeScript part still builds, and
// the backend reports the missing helper with OL_SOCK_HELPER_MISSING at start.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");

// The zygote's fork server is plain Python: shipped beside the helper, mounted into zygotes.
mkdirSync(join(pkg, "dist", "zygote"), { recursive: true });
copyFileSync(
  join(pkg, "native", "ol_fork_server.py"),
  join(pkg, "dist", "zygote", "ol_fork_server.py"),
);

if (process.platform !== "linux") {
  console.warn(`build-helper: skipped, ${process.platform} is not Linux`);
  process.exit(0);
}
const cc = process.env.CC ?? "cc";
try {
  execFileSync(cc, ["--version"], { stdio: "ignore" });
} catch {
  console.warn(`build-helper: skipped, no C compiler (${cc}) on PATH`);
  process.exit(0);
}
mkdirSync(join(pkg, "dist"), { recursive: true });
for (const name of ["ol-sock-helper", "ol-sock-reaper"]) {
  const source = join(pkg, "native", `${name}.c`);
  const output = join(pkg, "dist", name);
  // Built beside and renamed into place: a sandbox being created never sees half a binary.
  const staging = `${output}.${process.pid}.tmp`;
  const flags = ["-O2", "-s", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", staging, source];
  try {
    try {
      execFileSync(cc, ["-static", ...flags], { stdio: ["ignore", "ignore", "pipe"] });
    } catch {
      execFileSync(cc, flags, { stdio: "inherit" });
    }
    renameSync(staging, output);
  } finally {
    rmSync(staging, { force: true });
  }
  console.log(`build-helper: built ${output}`);
}
