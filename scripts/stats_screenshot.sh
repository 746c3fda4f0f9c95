#!/usr/bin/env bash
# Renders the example app's HTML stats page (/cache-stats/ui) in headless
# Chromium and saves it as docs/stats-page.png (the README shows it).
# Two instances of the app share a redis-server started here on a free
# port, so the page shows local and shared hits; the traffic also makes
# misses, bypasses (a no-store page, cookie requests, unsafe methods) and
# coalesced waits (concurrent requests for a cold page). Installs Debian's
# chromium and redis-server when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --quiet --features axum,redis --example web_app
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
pids+=($!)
export CACHE_TYPE=redis CACHE_REDIS_URL="redis://127.0.0.1:$redis_port/" CACHE_KEY_PREFIX=screenshot
a=$(free_port); b=$(free_port)
WEB_APP_ADDR="127.0.0.1:$a" target/debug/examples/web_app >/dev/null 2>&1 &
pids+=($!)
WEB_APP_ADDR="127.0.0.1:$b" target/debug/examples/web_app >/dev/null 2>&1 &
pids+=($!)
for port in "$a" "$b"; do
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/cache-stats" >/dev/null && break; sleep 0.05; done
done

# Traffic: A fills the caches, B gets shared hits and then local ones. Both
# serve one public host, as behind a load balancer (pages are keyed by host).
curl() { command curl -H "Host: shop.example" "$@"; }
for base in "http://127.0.0.1:$a" "http://127.0.0.1:$b"; do
  for i in $(seq 20); do curl -fs "$base/expensive-page" >/dev/null; done
  for i in $(seq 30); do curl -fs "$base/user/$((i % 6 + 1))" >/dev/null; done
  for i in $(seq 12); do curl -fs "$base/search?q=rust&page=$((i % 4 + 1))" >/dev/null; done
  for i in $(seq 10); do curl -fs "$base/products?page=$((i % 5))" >/dev/null; done
  for i in $(seq 8); do curl -fs "$base/news" "$base/popular-products" "$base/dashboard" "$base/data" >/dev/null; done
  curl -fs "$base/manual-cache" "$base/manual-cache" >/dev/null
  # Bypasses: a page that may not be stored, personal (cookie) requests,
  # and a comment POSTed to an article (which drops its page everywhere).
  for i in $(seq 6); do curl -fs "$base/live-score" >/dev/null; done
  for i in $(seq 4); do curl -fs -H "Cookie: session=$i" "$base/expensive-page" >/dev/null; done
  # Coalesced waits: 8 concurrent requests for each cold article page.
  for id in 1 2 3; do
    seq 8 | xargs -P 8 -I{} curl -fs -o /dev/null "$base/articles/$id$([ "$base" = "http://127.0.0.1:$b" ] && echo "?b")"
  done
  curl -fs -X POST "$base/articles/1" >/dev/null
done

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --hide-scrollbars --window-size=1480,960 \
  --screenshot=docs/stats-page.png "http://127.0.0.1:$b/cache-stats/ui" 2>/dev/null
echo "wrote docs/stats-page.png (instance B of two sharing one redis-server)"
