#!/usr/bin/env bash
# Rewrite every program output the book shows (src/generated/*.txt), from full runs, and the
# tables and charts the examples write themselves. Takes several minutes; run it by hand after
# changing what an example prints, then read the diff: prose that quotes a number may need
# the new one. CI only checks the shapes (ci/outputs.py check).
#   ci/regen-outputs.sh            # everything
#   ci/regen-outputs.sh ch03-gaps  # one output (names: python3 ci/outputs.py list)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 ci/outputs.py regen "$@"
if [ $# -eq 0 ]; then
  cargo run --quiet --example ch01_version_matrix -- --write
  cargo run --quiet --example ch05_backpressure -- --write-chart >/dev/null
  cargo run --quiet --release --example ch07_throughput -- --write-table >/dev/null
  cargo run --quiet --example ch04_redis2_budget -- --write >/dev/null
  cargo run --quiet --example ch06_library_tools -- --write-table >/dev/null
  cargo run --quiet --example ch06_bursts -- --write-table >/dev/null
  cargo run --quiet --example ch04_redis2_nodelay -- --write >/dev/null
fi
git status --short src/generated
