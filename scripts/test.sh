#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs missing servers, checks
# formatting and lints, runs the benchmark suite against the peers in short
# (printing the ratios and building its report), then every test with every
# feature.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools) # creates the test Redis Cluster
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
command -v openssl >/dev/null 2>&1 || missing+=(openssl) # the certificates of the rediss:// tests
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

# The tests and benchmarks configure the runtime themselves; a CACHE_* variable left in the
# shell would change what the default-configuration tests see.
unset CACHE_TYPE CACHE_DEFAULT_TIMEOUT CACHE_KEY_PREFIX CACHE_MAX_ENTRIES CACHE_REDIS_URL \
  CACHE_SHARED_TIMEOUT_MS CACHE_MAX_VALUE_SIZE CACHE_TTL_JITTER CACHE_DIR CACHE_THRESHOLD \
  CACHE_SQLITE_PATH CACHE_MEMCACHED_SERVERS CACHE_BUS_POLL_MS CACHE_REDIS_NODES CACHE_METRICS \
  CACHE_CODEC CACHE_REDIS_CA_CERT CACHE_REDIS_CLIENT_CERT CACHE_REDIS_CLIENT_KEY

# Each stage says how long the run has taken so far (CI must stay well under 40 minutes).
stage() { echo "==> $1 (at ${SECONDS}s)"; }

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "MSRV: every locked dependency against rust-version (scripts/msrv.py)"
python3 scripts/msrv.py
stage "what crates.io users meet: README, doc citations, one syn, the quickstart's packages"
python3 scripts/check_package.py
stage "the runtime's layers: no import cycle, no upward import, no file over 700 lines of code (scripts/check_layers.py)"
python3 scripts/check_layers.py
stage "cargo clippy"
# incompatible_msrv: no std API newer than the workspace's rust-version.
cargo clippy --workspace --all-targets --all-features -- -D warnings -D clippy::incompatible_msrv
stage "each runtime feature on its own (a consumer's build): clippy -D warnings"
# Workspace builds unify features; a user who enables one backend does not.
for feature in "" metrics sqlite memcached redis redis-cluster tls axum moka; do
  cargo clippy --quiet -p layercache-runtime --no-default-features ${feature:+--features "$feature"} -- -D warnings
done
stage "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features --quiet
stage "docs as docs.rs builds them (nightly, --cfg docsrs: feature badges)"
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo +nightly doc --no-deps --all-features --quiet \
  -p layercache -p layercache-runtime -p layercache-macros
stage "cargo publish --workspace --dry-run (package and build the published crates)"
# --allow-dirty: the dry run uploads nothing, and a local run has uncommitted work.
# The dry run verifies each crate against a local registry of the packaged
# workspace crates. cargo treats registry crates as immutable: it never
# extracts one again (under $CARGO_HOME/registry/src/-<hash>/) nor rebuilds it
# (in target/debug) for the same version, so a second run in the same
# checkout or CARGO_HOME would build an earlier run's sources (a macro added
# since then "does not exist"). Drop those copies first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/layercache-* target/package \
  target/debug/deps/liblayercache* target/debug/.fingerprint/layercache-*
cargo publish --workspace --dry-run --allow-dirty --quiet
stage "benchmarks against the peers (short run of scripts/bench.sh; report in target/bench-report)"
BENCH_QUICK=1 bash scripts/bench.sh target/bench-report
stage "cargo test"
# tls-consumer runs below, on its own feature set.
cargo test --workspace --all-features --exclude tls-consumer
# On its own, so only `layercache/tls` is on: in the workspace build above another
# dependency turns a rustls crypto provider on and would hide a missing one.
stage "rediss:// from a crate with only layercache/tls (cargo test -p tls-consumer)"
cargo test -p tls-consumer
stage "fuzzing: envelope, key and notice decoders, ${FUZZ_SECONDS:-45} s each (scripts/fuzz.sh)"
bash scripts/fuzz.sh
echo "==> all passed in ${SECONDS}s"
