#!/usr/bin/env bash
# Browser test of the built book: serve it on a free localhost port, open every page in
# headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core from
# ci/browser/package-lock.json), and check what a reader sees: no page error, diagrams
# rendered, a complete sidebar, a working search, a complete print page.
#   ci/browser_test.sh [BOOK_DIR]      # default: book/ (build it first: mdbook build)
# Install what it needs with: LAB_BROWSER=1 ci/setup.sh
# Screenshots of two chapters go to target/browser/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'browser test: ERROR: %s\n' "$*" >&2; exit 1; }

book=${1:-book}
[ -f "$book/index.html" ] || die "$book/index.html not found: build the book first (mdbook build)"
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || die "$chromium not found: install it with LAB_BROWSER=1 ci/setup.sh (Debian package chromium)"
command -v node >/dev/null || die "node not found: install Node.js 20 or newer"
[ -d ci/browser/node_modules/playwright-core ] || die "playwright-core not installed: run LAB_BROWSER=1 ci/setup.sh"

shots=target/browser
mkdir -p "$shots"
log=$(mktemp)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -f "$log"; }
trap cleanup EXIT

# Port 0: the kernel picks a free port, and http.server prints which one.
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$book" >"$log" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/^Serving HTTP on [0-9.]* port \([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && break
  kill -0 "$server" 2>/dev/null || die "the book server did not start: $(cat "$log")"
  sleep 0.1
done
[ -n "$port" ] || die "the book server did not report its port within 10s"

CHROMIUM="$chromium" node ci/browser/browser-test.mjs "http://127.0.0.1:$port" "$book" "$shots"
