#!/usr/bin/env bash
# A local Redis Cluster for the RedisStore tests: 3 masters and 3 replicas on 127.0.0.1.
#
#   scripts/redis-cluster.sh start [BASE_PORT]   # ports BASE_PORT..BASE_PORT+5 (default 7000..7005)
#   scripts/redis-cluster.sh stop  [BASE_PORT]
#   scripts/redis-cluster.sh status [BASE_PORT]
#
# `start` is idempotent: a cluster already up (cluster_state:ok on every node) is left alone; nodes
# that are down are started again; a fresh set of nodes is joined with `redis-cli --cluster create`.
# It exits non-zero unless the cluster reports cluster_state:ok within 60 s. Node data (nodes.conf,
# logs) lives in ${REDIS_CLUSTER_DIR:-/tmp/tta-redis-cluster-BASE_PORT}; nothing is persisted.
# Prints the seed list for TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL on success.
set -euo pipefail

command="${1:-}"
base="${2:-7000}"
dir="${REDIS_CLUSTER_DIR:-/tmp/tta-redis-cluster-$base}"
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

die() { printf 'redis-cluster.sh: %s\n' "$*" >&2; exit 1; }
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
up() { cli "$1" ping >/dev/null 2>&1; }
state_ok() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok$'; }
seeds() { local IFS=,; local urls=(); for p in "${ports[@]}"; do urls+=("redis://127.0.0.1:$p"); done; echo "${urls[*]}"; }

all_ok() {
  for p in "${ports[@]}"; do state_ok "$p" || return 1; done
  # Every slot served, three masters with one replica each.
  local info; info="$(cli "${ports[0]}" cluster info | tr -d '\r')"
  grep -q '^cluster_slots_ok:16384$' <<<"$info" && grep -q '^cluster_size:3$' <<<"$info" \
    && [ "$(grep -cE '[ ,]slave ' < <(cli "${ports[0]}" cluster nodes))" -eq 3 ]
}

start_node() {
  local port="$1"
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-node-timeout 2000 \
    --cluster-config-file "$dir/$port/nodes.conf" --save "" --appendonly no --dir "$dir/$port" \
    --logfile "$dir/$port/redis.log" --daemonize yes
}

wait_up() {
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
  die "redis-server did not start on port $1 (log: $dir/$1/redis.log)"
}

case "$command" in
  start)
    command -v redis-server >/dev/null || die "redis-server is not installed"
    command -v redis-cli >/dev/null || die "redis-cli is not installed"
    if all_ok 2>/dev/null; then seeds; exit 0; fi
    for p in "${ports[@]}"; do up "$p" || start_node "$p"; done
    for p in "${ports[@]}"; do wait_up "$p"; done
    # Nodes that already know each other (restarted from their nodes.conf) rejoin by themselves;
    # a set of empty nodes is joined here.
    if [ "$(cli "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = "1" ]; then
      addrs=(); for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
      redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
        || die "redis-cli --cluster create failed: $(tail -n 5 "$dir/create.log")"
    fi
    for _ in $(seq 1 600); do
      if all_ok 2>/dev/null; then seeds; exit 0; fi
      sleep 0.1
    done
    die "the cluster on ports ${ports[0]}..${ports[5]} did not reach cluster_state:ok in 60 s"
    ;;
  stop)
    for p in "${ports[@]}"; do
      # NOW: Redis 7 otherwise waits up to 10 s for lagging replicas (e.g. after a failover test).
      if up "$p"; then cli "$p" shutdown nosave now >/dev/null 2>&1 || true; fi
      if up "$p"; then cli "$p" shutdown nosave >/dev/null 2>&1 || true; fi
    done
    for p in "${ports[@]}"; do
      for _ in $(seq 1 50); do up "$p" || break; sleep 0.1; done
      ! up "$p" || die "the node on port $p did not stop"
    done
    rm -rf "$dir"
    ;;
  status)
    if all_ok 2>/dev/null; then echo "cluster_state:ok $(seeds)"; else echo "not ok"; exit 1; fi
    ;;
  *)
    die "usage: $0 start|stop|status [BASE_PORT]"
    ;;
esac
