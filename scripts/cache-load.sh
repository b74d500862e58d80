#!/usr/bin/env bash
# End-to-end throughput of the example server with the local token cache, against the memory store and the
# uncached Redis store: three release servers on 127.0.0.1:7520-7522, one login each, then `wrk` on
# GET /api/v1/user with that token, the three alternating for ROUNDS rounds of SECONDS each.
#
#   scripts/cache-load.sh                       # Redis at redis://127.0.0.1:6379/0, 5 rounds of 5 s
#   REDIS_URL=redis://10.0.0.5:6379/0 ROUNDS=9 scripts/cache-load.sh
#   CLUSTER_URL=redis://127.0.0.1:7000,redis://127.0.0.1:7001 scripts/cache-load.sh   # adds a cached
#                                               # server on Redis Cluster (127.0.0.1:7523)
#
# Requires wrk, curl and python3. Nothing is asserted: read the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
redis=${REDIS_URL:-redis://127.0.0.1:6379/0}
rounds=${ROUNDS:-5}
seconds=${SECONDS_PER_RUN:-5}
cargo build --release --example server --features redis
bin=${CARGO_TARGET_DIR:-target}/release/examples/server
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() { RUST_LOG=warn "$bin" --addr "127.0.0.1:$1" --store "$2" ${3:+"$3"} >/dev/null 2>&1 & pids+=($!); }
start 7520 memory://
start 7521 "$redis" --cache
start 7522 "$redis"
ports=(7520 7521 7522)
if [ -n "${CLUSTER_URL:-}" ]; then start 7523 "$CLUSTER_URL" --cache; ports+=(7523); fi
sleep 2
login() {
  curl -s -X POST "127.0.0.1:$1/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"demo@example.com","password":"demo-password","device_name":"wrk"}' |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])'
}
declare -A token names=([7520]="memory" [7521]="redis --cache" [7522]="redis" [7523]="cluster --cache")
for port in "${ports[@]}"; do token[$port]=$(login "$port"); done
for round in $(seq "$rounds"); do
  for port in "${ports[@]}"; do
    rate=$(wrk -t2 -c50 -d"${seconds}s" -H "Authorization: Bearer ${token[$port]}" "http://127.0.0.1:$port/api/v1/user" |
      awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "NON-2XX: " $0}')
    echo "round $round ${names[$port]}: $rate req/s"
  done
done
