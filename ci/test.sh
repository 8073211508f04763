#!/usr/bin/env bash
# Set up, then prove everything: formatting, lints, every test against real Redis servers,
# every example in quick mode, the book built without warnings, its includes, links and
# anchors checked. Stops at the first problem and says which step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

started=$SECONDS
step_started=$SECONDS
current=""
step() {
  [ -n "$current" ] && printf '   (%s: %ds)\n' "$current" $((SECONDS - step_started))
  current="$1"
  step_started=$SECONDS
  printf '\n== %s\n' "$1"
}
trap 'status=$?; if [ $status -ne 0 ]; then printf "\nci/test.sh FAILED in step: %s (exit %d)\n" "$current" "$status" >&2; fi' EXIT

step "setup"
bash ci/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --all-targets --quiet -- -D warnings

step "build the book first (a renamed example or anchor must fail fast)"
python3 ci/check_book.py

step "cargo test (real redis-servers; examples run in quick mode)"
cargo test --locked --all-targets
cargo test --locked --doc --quiet

step "mdbook build (no warnings allowed)"
rm -rf book
mdbook build 2>&1 | tee target/mdbook-build.log
if grep -E "WARN|ERROR" target/mdbook-build.log >/dev/null; then
  echo "mdbook printed warnings or errors (above)" >&2
  exit 1
fi

step "links and anchors of the built book"
python3 ci/check_links.py book

step "done"
printf 'ci/test.sh: all checks passed in %ds\n' $((SECONDS - started))
