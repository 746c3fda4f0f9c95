#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs missing servers, checks
# formatting and lints, runs a short benchmark against the peers (printing
# the ratios), then every test with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools) # creates the test Redis Cluster
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
# Headless Chromium renders the HTML stats page in tests/web_app.rs.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "==> cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features --quiet
echo "==> benchmark: #[cached] hit vs the cached crate, quick_cache, moka (short run)"
mkdir -p target
log=target/bench-local-hit.log
if ! cargo bench --bench local_hit -- --warm-up-time 1 --measurement-time 2 --noplot >"$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -vE '^(Benchmarking|Found| +[0-9]+ \(|\s*Compiling)' "$log" || true
echo "==> benchmark: #[cached] shared hit vs raw redis-rs on one redis-server (short run)"
log=target/bench-redis-hit.log
if ! cargo bench --features redis --bench redis_hit -- --warm-up-time 1 --measurement-time 2 --noplot >"$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -vE '^(Benchmarking|Found| +[0-9]+ \(|\s*Compiling)' "$log" || true
echo "==> benchmark: a view-cached route under load vs uncached and http-cache-tower-server (short run)"
log=target/bench-web-load.log
if ! WEB_LOAD_SECS=2 cargo bench --features axum --bench web_load >"$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -vE '^\s*(Compiling|Finished|Running|Downloaded|Downloading)' "$log" || true
echo "==> benchmark: a shared hit on every backend (redis, redis-cluster, memcached, sqlite, filesystem; short run)"
log=target/bench-backends.log
if ! BACKENDS_SECS=1 cargo bench --features redis,redis-cluster,sqlite,memcached --bench backends >"$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -vE '^\s*(Compiling|Finished|Running|Downloaded|Downloading)' "$log" || true
echo "==> cargo test"
# The tests configure the runtime themselves; a CACHE_* variable left in the
# shell would change what the default-configuration tests see.
unset CACHE_TYPE CACHE_DEFAULT_TIMEOUT CACHE_KEY_PREFIX CACHE_MAX_ENTRIES CACHE_REDIS_URL \
  CACHE_SHARED_TIMEOUT_MS CACHE_MAX_VALUE_SIZE CACHE_TTL_JITTER CACHE_DIR CACHE_THRESHOLD \
  CACHE_SQLITE_PATH CACHE_MEMCACHED_SERVERS CACHE_BUS_POLL_MS CACHE_REDIS_NODES
cargo test --workspace --all-features
