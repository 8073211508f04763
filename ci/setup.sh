#!/usr/bin/env bash
# Installs what the book, its examples and its tests need; skips what is already there.
#   redis-server 7.0 or newer with redis-cli and redis-benchmark (Debian packages
#   redis-server and redis-tools), redis-sentinel at the same version (chapter 9), mdBook
#   0.5.4 and mdbook-mermaid 0.17.1 (pinned).
# Safe to run again: it only installs what is missing or at another version.
# Set LAB_VALKEY=1 to also install Valkey 8 (valkey-server, valkey-sentinel, valkey-cli) from
# Debian 12's bookworm-backports suite, so that LAB_SERVER=valkey runs the lab on it; ci/test.sh
# sets it. The suite is added for that one apt-get run only (see below).
# Set LAB_BROWSER=1 to also install Debian's chromium, chromium-driver and python3-selenium
# for the browser test (ci/browser_test.py); ci/test.sh sets it. On Ubuntu, whose Chromium is
# only a snap, it installs nothing for it and says that the browser test will be SKIPPED.
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
    local formula="$*"
    formula=${formula/redis-server/redis}
    formula=${formula/redis-tools/redis}
    die "on macOS, install it with Homebrew: brew install $formula, then run ci/setup.sh again"
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

# --- redis-server 7.0+ (sharded Pub/Sub, chapter 9), redis-cli and redis-benchmark.
if command -v redis-server >/dev/null; then
  say "redis-server present"
else
  apt_install redis-server
  # The Debian package may start a system-wide server on 6379; the lab never uses it
  # (every test starts its own on a free port), so leave it as the package set it up.
fi
redis_version=$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
[ -n "$redis_version" ] || die "cannot tell the version of $(command -v redis-server): $(redis-server --version)"
if [ "${redis_version%%.*}" -lt 7 ]; then
  die "redis-server $redis_version at $(command -v redis-server) is older than 7.0, which the book needs (SSUBSCRIBE/SPUBLISH, chapter 9; Ubuntu 22.04 packages 6.0): install Redis 7 or newer (Debian 12, Ubuntu 24.04, or https://redis.io/docs/latest/operate/oss_and_stack/install/) and run ci/setup.sh again"
fi
say "redis-server $redis_version"
# redis-cli and redis-benchmark come with redis-server on Debian and Ubuntu (package
# redis-tools); a redis-server installed some other way may lack them.
if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt_install redis-tools
fi
say "redis-cli and redis-benchmark present"
# redis-sentinel (chapter 9's Sentinel deployment): Debian packages it separately, at the
# same version as redis-server. Like redis-server's, the package may start a system-wide
# Sentinel (port 26379) that the lab never uses: every test starts its own on free ports.
if ! command -v redis-sentinel >/dev/null; then
  apt_install redis-sentinel
fi
sentinel_version=$(redis-sentinel --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
[ "$sentinel_version" = "$redis_version" ] || say "warning: redis-sentinel $sentinel_version is not redis-server $redis_version"
say "redis-sentinel $sentinel_version"

# --- Optional: Valkey 8 beside Redis (LAB_VALKEY=1), for LAB_SERVER=valkey.
# Debian 12 packages Valkey only in bookworm-backports. What this changes on the machine: it
# installs the packages valkey-server, valkey-sentinel and valkey-tools (and any dependency
# they lack, from bookworm itself) and nothing else. The suite is added for those apt-get runs
# only, through a temporary sources list (apt's Dir::Etc::SourceList option) that holds the
# machine's own sources.list plus one bookworm-backports line on the machine's own Debian
# mirror: nothing is written to /etc/apt, no pin is set, later apt-get runs never see the
# suite (so they never upgrade anything from it, Valkey included: run ci/setup.sh again for
# that), and only the three packages named come from it (`package/bookworm-backports`).
# Like redis-server's, the package may start a system-wide valkey-server on 6379 (none here:
# no init system runs in a container); the lab never uses it.
VALKEY_MAJOR=8
if [ "${LAB_VALKEY:-0}" = 1 ]; then
  valkey_version() { "$1" --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p'; }
  valkey_ready() {
    command -v valkey-server >/dev/null && command -v valkey-sentinel >/dev/null &&
      command -v valkey-cli >/dev/null &&
      [ "$(valkey_version valkey-server | cut -d. -f1)" = "$VALKEY_MAJOR" ]
  }
  os_codename=$(. /etc/os-release 2>/dev/null && echo "${ID:-}:${VERSION_CODENAME:-}")
  if valkey_ready; then
    :
  elif [ "$(uname -s)" = "Darwin" ]; then
    die "LAB_VALKEY=1: on macOS, install Valkey 8 with Homebrew (brew install valkey: valkey-server, valkey-sentinel, valkey-cli), or run with LAB_VALKEY=0 to skip the Valkey runs"
  elif [ "$os_codename" != debian:bookworm ]; then
    die "LAB_VALKEY=1: this script installs Valkey only on Debian 12 (bookworm-backports); this is ${os_codename:-an unknown system}. Install Valkey $VALKEY_MAJOR (valkey-server, valkey-sentinel and valkey-cli on PATH) with your package manager (Debian 13 and Ubuntu 24.10 or newer package it) or from https://valkey.io/download/, or run with LAB_VALKEY=0 to skip the Valkey runs"
  else
    [ "$SUDO" != none ] || die "installing Valkey needs root or sudo"
    # The machine's own Debian mirror, as apt knows it (the repository its bookworm suite
    # comes from).
    mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
      awk '$2 == "bookworm" { print $1; exit }')
    [ -n "$mirror" ] || die "LAB_VALKEY=1: no Debian bookworm source in apt's sources to take bookworm-backports from: add one (https://backports.debian.org/Instructions/) or install Valkey $VALKEY_MAJOR yourself"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    signed=""
    [ -f "$keyring" ] && signed="[signed-by=$keyring] "
    valkey_sources=$(mktemp -d)
    trap 'rm -rf "$valkey_sources"' EXIT
    cat /etc/apt/sources.list >"$valkey_sources/sources.list" 2>/dev/null || true
    echo "deb ${signed}${mirror} bookworm-backports main" >>"$valkey_sources/sources.list"
    with_backports=(-o "Dir::Etc::SourceList=$valkey_sources/sources.list")
    say "Valkey $VALKEY_MAJOR: apt-get update and install from bookworm-backports ($mirror), for this run only"
    $SUDO apt-get "${with_backports[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${with_backports[@]}" install -y -qq --no-install-recommends \
      valkey-server/bookworm-backports valkey-sentinel/bookworm-backports valkey-tools/bookworm-backports >/dev/null
    valkey_ready || die "valkey-server $VALKEY_MAJOR, valkey-sentinel and valkey-cli are still not all on PATH after the install"
  fi
  say "valkey-server $(valkey_version valkey-server), valkey-sentinel $(valkey_version valkey-sentinel), valkey-cli present"
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

# --- Optional: a browser for the browser test of the built book (ci/browser_test.py).
# Debian's own packages only: chromium, chromium-driver and python3-selenium (which lives in
# /usr/bin/python3, the interpreter the test runs with). Nothing comes from npm or pip.
if [ "${LAB_BROWSER:-0}" = 1 ]; then
  os_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-}")
  if [ "$(uname -s)" = "Darwin" ]; then
    say "macOS: the browser test needs Chromium, ChromeDriver and selenium for python3; point CHROMIUM and CHROMEDRIVER at them"
  elif [ -n "${CHROMIUM:-}" ]; then
    say "browser test: CHROMIUM=$CHROMIUM given, installing nothing for it"
  elif [ "$os_id" = ubuntu ]; then
    say "Ubuntu packages Chromium only as a snap (apt's chromium-browser installs the snap), which the browser test does not drive: it will be SKIPPED (set CHROMIUM and CHROMEDRIVER to a Chromium that is not a snap to run it)"
  elif [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && /usr/bin/python3 -c 'import selenium' 2>/dev/null; then
    say "chromium $(/usr/bin/chromium --version 2>/dev/null | cut -d' ' -f2), chromedriver and python3-selenium present"
  else
    apt_install chromium chromium-driver python3-selenium
  fi
fi

say "ready"
