#!/usr/bin/env bash
# Before a workshop day, on each learner's machine, with network: install and fetch
# everything, compile every program and test, build the book, and prove the lab works, so that
# the room needs no network. See the instructor's guide (src/instructor-guide.md).
#   ci/prepare-workshop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

say() { printf '\n[prepare] %s\n' "$*"; }
started=$SECONDS

say "tools: redis-server, mdBook, mdbook-mermaid (ci/setup.sh)"
bash ci/setup.sh

say "every crate, into ${CARGO_HOME:-$HOME/.cargo} (cargo fetch)"
cargo fetch --locked

say "every example, for cargo run (the first time: several minutes)"
cargo build --locked --offline --examples

say "every test, the exercise solutions' included, for cargo test"
cargo test --locked --offline --all-targets --no-run

say "chapter 7's exercise, which measures a release build (about 2 minutes)"
cargo build --locked --offline --release --example ch07_exercise

say "the lab: a redis-server of our own, a burst of numbered messages"
cargo run --locked --offline --quiet --example ch00_first_result -- --quick

say "the book, readable without a server: book/index.html and book/print.html"
mdbook build >/dev/null 2>&1 || mdbook build

say "ready in $((SECONDS - started))s. In the room: export CARGO_NET_OFFLINE=true"
