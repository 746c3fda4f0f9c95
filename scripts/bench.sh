#!/usr/bin/env bash
# The whole benchmark suite against its peers, in one run, and the report:
# writes BENCHMARKS.md and docs/bench/*.svg. Starts its own redis-server
# and memcached on free loopback ports (installed when missing).
# About 10 minutes on 2 cores after the first build.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export BENCH_RESULTS_DIR="$PWD/target/bench-results"
rm -rf "$BENCH_RESULTS_DIR"
mkdir -p "$BENCH_RESULTS_DIR"
criterion=(-- --warm-up-time 2 --measurement-time 5 --noplot)
quiet() { grep -vE '^(Benchmarking|Found| +[0-9]+ \(|\s*(Compiling|Finished|Running|Downloaded|Downloading))' || true; }

echo "==> building"
cargo bench --all-features --no-run 2>&1 | tail -1
echo "==> local hit"
cargo bench --bench local_hit "${criterion[@]}" 2>&1 | quiet
echo "==> metrics cost"
cargo bench --bench metrics_cost 2>&1 | quiet
echo "==> shared hit and miss (Redis)"
cargo bench --features redis --bench redis_hit "${criterion[@]}" 2>&1 | quiet
echo "==> stampede"
cargo bench --bench stampede 2>&1 | quiet
echo "==> zipf"
cargo bench --bench zipf 2>&1 | quiet
echo "==> memory"
cargo bench --bench memory 2>&1 | quiet
echo "==> coherence"
cargo bench --features redis --bench coherence 2>&1 | quiet
echo "==> backends"
BACKENDS_SECS=4 cargo bench --features redis,redis-cluster,sqlite,memcached --bench backends 2>&1 | quiet
echo "==> view cache under load"
WEB_LOAD_SECS=5 cargo bench --features axum --bench web_load 2>&1 | quiet
python3 scripts/bench_report.py "$BENCH_RESULTS_DIR" BENCHMARKS.md docs/bench
