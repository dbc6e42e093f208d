# Sourced by ./ol and ./run-tests: installs the pinned toolchain from the npm registry
# (pnpm, and Node.js through the `node` package) into ./node_modules, then puts it first on PATH.
# Nothing outside the repository is changed.
set -euo pipefail
OL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PNPM_VERSION="$(sed -n 's/.*"packageManager": "pnpm@\([^"]*\)".*/\1/p' "$OL_ROOT/package.json")"
if [ ! -x "$OL_ROOT/node_modules/.bin/pnpm" ] || [ ! -x "$OL_ROOT/node_modules/.bin/node" ] \
  || [ "$OL_ROOT/pnpm-lock.yaml" -nt "$OL_ROOT/node_modules/.modules.yaml" ]; then
  echo "==> installing dependencies (pnpm $PNPM_VERSION, Node.js $(cat "$OL_ROOT/.node-version")) from the npm registry" >&2
  (cd "$OL_ROOT" && npx --yes "pnpm@$PNPM_VERSION" install --frozen-lockfile --reporter=append-only)
fi
export PATH="$OL_ROOT/node_modules/.bin:$PATH"
