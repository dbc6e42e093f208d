#!/usr/bin/env bash
# The `ol` CLI from this checkout: installs and builds on first use, then runs it.
source "$(dirname "$0")/scripts/bootstrap.sh"
if [ ! -f "$OL_ROOT/apps/ol-cli/dist/bin.js" ]; then
  echo "==> building packages" >&2
  (cd "$OL_ROOT" && pnpm run build --output-logs=errors-only)
fi
# The real binary, not node_modules/.bin/node: that shim runs node as its child, and a signal
# sent to this script's pid (kill, a supervisor) would then never reach the worker.
exec "$OL_ROOT/node_modules/node/bin/node" "$OL_ROOT/apps/ol-cli/dist/bin.js" "$@"
