#!/usr/bin/env bash
# Instructions per call of the hot paths, counted by valgrind's callgrind
# (the same count on a loaded machine, unlike wall-clock time).
#
#   bash scripts/callgrind.sh                      # every path, this checkout
#   bash scripts/callgrind.sh local_hit_u64 ...    # only these paths (names: --list)
#   bash scripts/callgrind.sh --base main          # the same program at another commit too:
#                                                  # one table, base vs head, change in %
#   bash scripts/callgrind.sh --repeat 3           # each count 3 times: median and spread
#                                                  # (the default with --base)
#
# The program is benches/examples/callgrind_paths.rs. Each path runs in its
# own process: a warm-up, then N measured calls between two marker functions;
# callgrind zeroes its counters on entering the first (--zero-before) and
# dumps them on entering the second (--dump-before), so start-up, warm-up and
# exit are left out: Ir/call = dumped Ir / N, minus the same figure for the
# empty loop. callgrind counts every thread of the process, so the shared
# paths include the work of layercache's I/O thread (not redis-server's).
#
# --base REV checks REV out in a temporary git worktree under
# target/callgrind-base/ (removed afterwards), copies this checkout's program
# into it (it uses only the public API), and builds it there with its own
# target dir (kept as a build cache; seeded from target/release on first use
# so the dependencies are not rebuilt). Starts its own redis-server on a free
# loopback port when a shared path is selected. With $BENCH_RESULTS_DIR set,
# also writes callgrind.json there (scripts/bench.sh's report reads it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

base="" repeat="" paths=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --list) paths=(--list); shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) paths+=("$1"); shift ;;
  esac
done
# The shared paths vary by a few % between runs: compare medians.
if [ -z "$repeat" ]; then
  if [ -n "$base" ]; then repeat=3; else repeat=1; fi
fi
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

work="$root/target/callgrind"
rm -rf "$work"
mkdir -p "$work"
build=(cargo build --profile bench -p layercache-benches --example callgrind_paths)

# The bench profile is the release profile with line tables (Cargo.toml):
# the benchmarks' dependencies are already built for it.
echo "==> building callgrind_paths (head)" >&2
"${build[@]}" >"$work/build-head.log" 2>&1 || { cat "$work/build-head.log"; exit 1; }
head_bin="$work/callgrind_paths-head"
cp target/release/examples/callgrind_paths "$head_bin"

if [ "${paths[0]:-}" = "--list" ]; then
  "$head_bin" --list
  exit 0
fi

redis_pid="" base_wt="$root/target/callgrind-base/worktree"
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi
  if [ -n "$base" ] && [ -d "$base_wt" ]; then
    git worktree remove --force "$base_wt" 2>/dev/null || rm -rf "$base_wt"
    git worktree prune
  fi
}
trap cleanup EXIT

sides=(head)
if [ -n "$base" ]; then
  rev=$(git rev-parse --verify "$base^{commit}")
  echo "==> building callgrind_paths at $base ($(git log -1 --format=%h "$rev"))" >&2
  base_target="$root/target/callgrind-base/target"
  if [ ! -d "$base_target/release" ] && [ -d target/release/deps ]; then
    mkdir -p "$base_target"
    cp -a target/release "$base_target/"
  fi
  rm -rf "$base_wt"
  git worktree prune
  git worktree add --detach --quiet "$base_wt" "$rev"
  mkdir -p "$base_wt/benches/examples"
  cp benches/examples/callgrind_paths.rs "$base_wt/benches/examples/"
  (cd "$base_wt" && CARGO_TARGET_DIR="$base_target" "${build[@]}") >"$work/build-base.log" 2>&1 \
    || { cat "$work/build-base.log"; exit 1; }
  cp "$base_target/release/examples/callgrind_paths" "$work/callgrind_paths-base"
  sides=(base head)
fi

"$head_bin" --list >"$work/paths.tsv"
if [ ${#paths[@]} -eq 0 ]; then
  mapfile -t paths < <(cut -f1 "$work/paths.tsv" | grep -vx empty)
fi
for p in "${paths[@]}"; do
  grep -q "^$p	" "$work/paths.tsv" || { echo "unknown path $p; known:" >&2; cut -f1 "$work/paths.tsv" >&2; exit 2; }
done

# The measured process and redis-server share one CPU: a reply then arrives
# while the client waits, instead of at a moment set by the other core's
# load, which changes how often futures are polled. The shared paths' spread
# between runs fell from 3-10 % to 0.3-2 % with it.
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi

needs_redis=no
for p in "${paths[@]}"; do
  if grep -q "^$p	yes	" "$work/paths.tsv"; then needs_redis=yes; fi
done
if [ $needs_redis = yes ]; then
  mkdir -p "$work/redis"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${pin[@]}" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
    --daemonize no --loglevel warning --dir "$work/redis" >"$work/redis/log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 50); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || { cat "$work/redis/log"; exit 1; }
  export CALLGRIND_REDIS_URL="redis://127.0.0.1:$port"
fi

# Measured calls per run: multiples of the keys a path cycles through. The
# shared paths still vary by 1-2 % between runs (how often a future is
# polled before its reply is there depends on timing); more calls do not
# help that.
calls_for() {
  case "$1" in
    shared_*|redis_*) echo 2048 ;;
    *) echo 10240 ;;
  esac
}

# Ir of the `n` measured calls of `path` (all threads).
count() {
  local bin="$1" path="$2" n="$3" out="$work/out"
  rm -f "$out" "$out".*
  if [ -n "$redis_pid" ]; then redis-cli -p "$port" flushall >/dev/null; fi
  if ! "${pin[@]}" valgrind --tool=callgrind --zero-before=callgrind_paths::measure_start \
    --dump-before=callgrind_paths::measure_end \
    --callgrind-out-file="$out" "$bin" "$path" "$n" >"$work/run.log" 2>&1; then
    cat "$work/run.log" >&2
    echo "callgrind_paths $path $n failed" >&2
    exit 1
  fi
  [ -f "$out.1" ] || { echo "no dump at measure_end for $path: did the markers get inlined?" >&2; exit 1; }
  awk '/^totals:/ { print $2 }' "$out.1"
}

echo "==> counting (${#paths[@]} paths x ${#sides[@]} builds x $repeat)" >&2
started=$SECONDS
: >"$work/counts.tsv"
for _ in $(seq "$repeat"); do
  for p in empty "${paths[@]}"; do
    n=$(calls_for "$p")
    for side in "${sides[@]}"; do
      ir=$(count "$work/callgrind_paths-$side" "$p" "$n")
      printf '%s\t%s\t%s\t%s\n' "$side" "$p" "$n" "$ir" >>"$work/counts.tsv"
    done
  done
done
echo "    ($((SECONDS - started)) s)" >&2
python3 scripts/callgrind_report.py "$work/counts.tsv" "$work/paths.tsv" "${base:-}"
