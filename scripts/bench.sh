#!/usr/bin/env bash
# The whole benchmark suite against its peers, in one run, and the report.
#
#   bash scripts/bench.sh                 # full run: rewrites BENCHMARKS.md and docs/bench/*.svg
#   BENCH_QUICK=1 bash scripts/bench.sh target/bench-report
#                                         # short run (CI): the report goes to the given directory
#
# Starts its own redis-server, Redis Cluster and memcached on free loopback
# ports (installs them when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# The benchmarks configure the runtime themselves.
unset CACHE_TYPE CACHE_DEFAULT_TIMEOUT CACHE_KEY_PREFIX CACHE_MAX_ENTRIES CACHE_REDIS_URL \
  CACHE_SHARED_TIMEOUT_MS CACHE_MAX_VALUE_SIZE CACHE_TTL_JITTER CACHE_DIR CACHE_THRESHOLD \
  CACHE_SQLITE_PATH CACHE_MEMCACHED_SERVERS CACHE_BUS_POLL_MS CACHE_REDIS_NODES CACHE_METRICS

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${1:-}" ]; then
  out_md="$1/BENCHMARKS.md"
  svg_dir="$1/docs/bench"
  mkdir -p "$1"
else
  out_md=BENCHMARKS.md
  svg_dir=docs/bench
fi
if [ -n "${BENCH_QUICK:-}" ]; then
  criterion=(-- --warm-up-time 0.5 --measurement-time 1 --noplot)
  secs=1
  repeat=1
else
  criterion=(-- --warm-up-time 2 --measurement-time 4 --noplot)
  secs=5
  repeat=3
fi
export BENCH_RESULTS_DIR="$PWD/target/bench-results"
rm -rf "$BENCH_RESULTS_DIR"
mkdir -p "$BENCH_RESULTS_DIR"
# The benchmarks are the workspace crate `benches/` (layercache-benches), which
# enables the backends it measures itself.
bench_pkg=(-p layercache-benches)
# Progress lines and the benchmarks' own tables; criterion's per-sample noise is dropped.
quiet() {
  grep -vE '^(Benchmarking|Found| +[0-9]+ \(|\s*(Compiling|Finished|Running|Downloaded|Downloading|time:|change:|thrpt:)|(local_hit|shared)_[a-z0-9_]+/|\s*Performance has|\s*No change|\s*Change within|\s*$)' || true
}
bench() {
  local log="target/bench-$1.log" started=$SECONDS
  shift
  if ! "$@" >"$log" 2>&1; then
    cat "$log"
    echo "benchmark failed: $*" >&2
    exit 1
  fi
  quiet <"$log"
  echo "    ($((SECONDS - started)) s)"
}

echo "==> building the benchmarks"
cargo bench "${bench_pkg[@]}" --no-run 2>&1 | tail -1
echo "    (${SECONDS} s)"
echo "==> local hit: #[cached] vs the cached crate (plain and sharded), quick_cache, moka"
bench local_hit cargo bench "${bench_pkg[@]}" --bench local_hit "${criterion[@]}"
echo "==> instructions per call (callgrind): hot paths, the cached crate, raw quick_cache and redis-rs"
bench callgrind bash scripts/callgrind.sh --repeat "$repeat"
echo "==> metrics cost on the hit path"
bench metrics_cost cargo bench "${bench_pkg[@]}" --bench metrics_cost
echo "==> shared hit and miss: #[cached] vs raw redis-rs and the cached crate's Redis store"
bench redis_hit cargo bench "${bench_pkg[@]}" --bench redis_hit "${criterion[@]}"
echo "==> stampede"
bench stampede cargo bench "${bench_pkg[@]}" --bench stampede
echo "==> zipf workload"
bench zipf cargo bench "${bench_pkg[@]}" --bench zipf
echo "==> memory per entry"
bench memory cargo bench "${bench_pkg[@]}" --bench memory
echo "==> coherence across processes"
bench coherence cargo bench "${bench_pkg[@]}" --bench coherence
echo "==> a shared hit on every backend"
BACKENDS_SECS=$secs bench backends cargo bench "${bench_pkg[@]}" --bench backends
echo "==> view cache under load vs uncached and http-cache-tower-server"
WEB_LOAD_SECS=$secs bench web_load cargo bench "${bench_pkg[@]}" --bench web_load
python3 scripts/bench_report.py "$BENCH_RESULTS_DIR" "$out_md" "$svg_dir"
