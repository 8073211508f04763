#!/usr/bin/env bash
# The canary: would the book's claims still hold on the newest redis-rs releases?
#
#   ci/canary.sh               # by hand, takes minutes (a clean build, then every test)
#   ci/canary.sh --keep        # the same, and keep the temporary copy to look into
#   ci/canary.sh --head        # copy the last commit (git archive HEAD), not the working tree
#   ci/canary.sh --self-test   # offline, seconds: the plumbing on ci/canary-fixture/ (CI runs it)
#
# It copies the project to a temporary directory (without target/, book/ or .git), moves the
# two redis pins of Cargo.toml there (the main `redis = "=1.x"` to the newest 1.x; the
# `redis_2_0` dev-dependency to the newest 2.x release, or 2.0.0 pre-release while there is no
# 2.0.0), lets Cargo resolve them without --locked (`cargo update` of those two packages only:
# every other crate stays as Cargo.lock has it), builds the examples and tests, runs every
# test (each chapter's claims, the examples in quick mode), and prints which claims rows of
# src/claims/ name a test that now fails. The old releases pinned for the version matrix
# (0.25.5 ... 0.29.5) stay pinned. Nothing in this working tree is changed.
#
# Exit status: 0 every claim holds; 1 some claim differs (or a test no claim names fails);
# 2 the canary itself could not run (no network, the build broke: see the log it names).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
ROOT=$PWD

copy_project() { # copy_project DEST
  tar --exclude=./target --exclude=./book --exclude=./.git -cf - . | tar -xf - -C "$1"
}

resolve() { # resolve DIR [--offline]: move the two pins, let Cargo resolve them, print versions
  local dir=$1 offline=${2:-}
  local before
  before=$(python3 "$ROOT/ci/canary.py" versions "$dir/Cargo.lock")
  python3 "$ROOT/ci/canary.py" loosen "$dir/Cargo.toml"
  local specs=()
  for version in $before; do
    case $version in 1.* | 2.*) specs+=(-p "redis@$version") ;; esac
  done
  (cd "$dir" && cargo update $offline --quiet "${specs[@]}")
  echo "pinned:   $before"
  echo "resolved: $(python3 "$ROOT/ci/canary.py" versions "$dir/Cargo.lock")"
}

if [ "${1:-}" = "--self-test" ]; then
  started=$SECONDS
  fixture=ci/canary-fixture
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  fail() { echo "canary self-test FAILED: $*" >&2; exit 1; }

  # 1. Loosening: the fixture manifest becomes exactly the expected one.
  # (Not named Cargo.toml: Cargo, run in the copy below, would read it as a parent manifest.)
  cp "$fixture/manifest.toml" "$work/manifest.toml"
  python3 ci/canary.py loosen "$work/manifest.toml"
  diff -u "$fixture/manifest.loosened.toml" "$work/manifest.toml" || fail "loosen changed the wrong lines"
  # A manifest whose pins moved elsewhere is refused, not silently left alone.
  if python3 ci/canary.py loosen "$work/manifest.toml" 2>/dev/null; then
    fail "loosen accepted a manifest without the pins"
  fi

  # 2. Resolution, on a real copy of this project, offline (Cargo's local cache): the pins
  #    move, Cargo resolves, and the lock file still holds one 1.x and one 2.x.
  mkdir "$work/copy"
  copy_project "$work/copy"
  versions=$(resolve "$work/copy" --offline) || fail "cargo could not resolve the loosened pins offline"
  echo "$versions" | sed 's/^/  /'
  resolved=$(echo "$versions" | sed -n 's/^resolved: //p')
  echo "$resolved" | grep -Eq '(^| )1\.[0-9]+\.[0-9]+( |$)' || fail "no redis 1.x resolved: $resolved"
  echo "$resolved" | grep -Eq '(^| )2\.[0-9]+\.[0-9]+' || fail "no redis 2.x resolved: $resolved"
  grep -q '^redis = { version = "1"' "$work/copy/Cargo.toml" || fail "the copy's main pin did not move"
  git diff --quiet -- Cargo.toml Cargo.lock || echo "  (this tree's Cargo.toml or Cargo.lock has uncommitted changes: not the canary's)"

  # 3. The report, on a recorded log: the failing tests, the claims rows naming them.
  set +e
  python3 ci/canary.py report "$fixture/cargo-test.log" "$fixture/claims" >"$work/report" 2>&1
  status=$?
  set -e
  diff -u "$fixture/report.expected" "$work/report" || fail "the report differs from the expected one"
  [ "$status" = 1 ] || fail "the report exited $status on a log with failures (expected 1)"
  echo "broken build" >"$work/empty.log"
  set +e
  python3 ci/canary.py report "$work/empty.log" "$fixture/claims" >/dev/null
  status=$?
  set -e
  [ "$status" = 2 ] || fail "a log without test results exited $status (expected 2)"
  echo "canary self-test: ok ($((SECONDS - started)) s)"
  exit 0
fi

keep=0 head=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    --head) head=1 ;;
    *) echo "usage: ci/canary.sh [--keep] [--head] | --self-test" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d -t pubsub-canary.XXXXXX)
[ $keep = 1 ] || trap 'rm -rf "$work"' EXIT
echo "== canary: copying the project to $work"
if [ $head = 1 ]; then
  git archive HEAD | tar -xf - -C "$work"
else
  copy_project "$work"
fi
echo "== resolving the newest redis 1.x and 2.x"
resolve "$work" | tee "$work/versions.txt"
log="$work/cargo-test.log"
echo "== building examples and tests (a clean build: minutes)"
build_started=$SECONDS
# CANARY_BUILD_FLAGS: extra flags for this build, e.g. --timings (a report of each crate's time).
# shellcheck disable=SC2086
if ! (cd "$work" && cargo build --examples --tests ${CANARY_BUILD_FLAGS:-}) >"$work/build.log" 2>&1; then
  echo "canary: the build FAILED against the resolved releases: the first errors:"
  grep -E -A8 '^error' "$work/build.log" | head -60
  keep=1
  trap - EXIT
  echo "canary: log kept in $work/build.log"
  exit 2
fi
echo "   built in $((SECONDS - build_started)) s"
echo "== running every test (claims of every chapter; examples in quick mode)"
tests_started=$SECONDS
(cd "$work" && cargo test --no-fail-fast --tests --examples) >"$log" 2>&1 || true
echo "   ran in $((SECONDS - tests_started)) s"
echo
cat "$work/versions.txt"
set +e
python3 ci/canary.py report "$log" "$work/src/claims"
status=$?
set -e
if [ $status != 0 ]; then
  trap - EXIT
  echo "canary: full log kept in $log"
fi
exit $status
