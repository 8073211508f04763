#!/usr/bin/env bash
# Installs what the book, its examples and its tests need; skips what is already there.
#   redis-server (Debian/Ubuntu package), mdBook 0.5.4 and mdbook-mermaid 0.17.1 (pinned).
# Safe to run again: it only installs what is missing or at another version.
# Set LAB_BROWSER=1 to also install Chromium, ChromeDriver and playwright-core (pinned by
# ci/browser/package-lock.json) for the browser test; ci/test.sh sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4
MDBOOK_MERMAID_VERSION=0.17.1

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
apt_updated=""
apt_install() {
  if [ "$(uname -s)" = "Darwin" ]; then
    die "on macOS, install it with Homebrew: brew install ${*/redis-server/redis}, then run ci/setup.sh again"
  fi
  command -v apt-get >/dev/null || die "no apt-get here: install $* with your package manager"
  [ "$SUDO" != none ] || die "installing $* needs root or sudo"
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Rust: the only thing we cannot install for you.
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), 1.88 or newer"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# --- redis-server and redis-cli.
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  say "redis-server present: $(redis-server --version | cut -d' ' -f3)"
else
  apt_install redis-server
  # The Debian package may start a system-wide server on 6379; the lab never uses it
  # (every test starts its own on a free port), so leave it as the package set it up.
fi

# --- mdBook and its plugin, pinned.
cargo_install() { # crate version binary
  if command -v "$3" >/dev/null && "$3" --version 2>/dev/null | grep -q "$2"; then
    say "$1 $2 present"
  else
    say "cargo install $1 $2 (a few minutes on 2 cores)"
    cargo install --locked --quiet "$1" --version "$2"
  fi
}
cargo_install mdbook "$MDBOOK_VERSION" mdbook
cargo_install mdbook-mermaid "$MDBOOK_MERMAID_VERSION" mdbook-mermaid

# --- Optional: a browser for the browser test of the built book (ci/browser_test.sh).
# Debian's Chromium (and ChromeDriver, for whoever prefers Selenium), driven by
# playwright-core at the version pinned in ci/browser/package-lock.json. Playwright never
# downloads a browser of its own here: it starts /usr/bin/chromium.
if [ "${LAB_BROWSER:-0}" = 1 ]; then
  if [ "$(uname -s)" = "Darwin" ]; then
    say "macOS: the browser test needs Chromium (brew install --cask chromium) and CHROMIUM=/path/to/its/binary"
  elif command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    say "chromium present: $(chromium --version 2>/dev/null | cut -d' ' -f2)"
  else
    apt_install chromium chromium-driver
  fi
  command -v node >/dev/null && command -v npm >/dev/null ||
    die "the browser test needs Node.js 20+ and npm (https://nodejs.org, or your package manager)"
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$node_major" -ge 20 ] || die "the browser test needs Node.js 20 or newer; this is $(node --version)"
  wanted=$(node -p 'require("./ci/browser/package-lock.json").packages["node_modules/playwright-core"].version')
  have=$(node -p 'try { require("./ci/browser/node_modules/playwright-core/package.json").version } catch (e) { "none" }')
  if [ "$have" = "$wanted" ]; then
    say "playwright-core $have present"
  else
    say "npm ci: playwright-core $wanted (ci/browser/package-lock.json)"
    # playwright-core has no install script and downloads no browser.
    npm ci --prefix ci/browser --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi

say "ready"
