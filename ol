#!/usr/bin/env bash
# The `ol` CLI from this checkout: installs and builds on first use, then runs it.
source "$(dirname "$0")/scripts/bootstrap.sh"
if [ ! -f "$OL_ROOT/apps/ol-cli/dist/bin.js" ]; then
  echo "==> building packages" >&2
  (cd "$OL_ROOT" && pnpm run build --output-logs=errors-only)
fi
exec node "$OL_ROOT/apps/ol-cli/dist/bin.js" "$@"
