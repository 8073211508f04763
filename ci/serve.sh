#!/usr/bin/env bash
# Set everything up, then serve the book at http://localhost:3000 (rebuilds on change).
#   ci/serve.sh                 # port 3000
#   ci/serve.sh --port 4000 --open
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
exec mdbook serve "$@"
