#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each
# (default 45) from its seed corpus in fuzz/corpus, and prints how many
# inputs each ran. Fails on a crash, a hang or a leak; the input that did
# it is kept in fuzz/artifacts/<target>/. Needs the nightly toolchain;
# installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-45}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

targets=(envelope key notice)
cargo +nightly fuzz build 2>&1 | tail -n 3
for t in "${targets[@]}"; do
  work="work/$t"
  rm -rf "$work" && mkdir -p "$work"
  log="work/$t.log"
  # The first directory takes new inputs; the seeds are only read.
  if ! cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz $t: ${runs} executions in ${secs} s, no crash"
done
