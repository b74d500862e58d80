#!/usr/bin/env bash
# Load test of the example server (examples/server.rs, release build) on loopback.
#
#   scripts/load.sh                      # 10 s per throughput run, 2 threads, 50 connections, 30 s churn
#   LOAD_SECONDS=30 CHURN_SECONDS=120 scripts/load.sh
#   LOAD_STORE=redis://127.0.0.1:6379/0 LOAD_FEATURES=redis scripts/load.sh
#
# 1. Throughput, with wrk, against one server:
#    - authenticated: GET /api/v1/user with a valid token (every answer must be 200);
#    - rejected: the same route without a token (401: the cost of turning a request away);
#    - baseline: GET /healthz, the server's public 200 route, which does not run the auth layer: the cost
#      of everything but auth.
# 2. Churn, against a second server with 2-second tokens and a 1-second pruner: for CHURN_SECONDS, worker
#    threads (one user each) exchange refresh tokens for new pairs, leaving the old ones to expire and be
#    pruned, use each access token, and every 10th round log out and back in. The server's resident
#    memory (VmRSS) is sampled every RSS_SAMPLE_SECONDS; first, last and max are reported. The first
#    logins grow it by the password hashes' memory (argon2, 19 MiB each) once; what matters is that it
#    does not keep growing afterwards.
#
# Everything runs on 127.0.0.1 and stops by itself. Requires curl and python3; installs wrk (apt) when
# missing. Throughput figures are for this machine with wrk sharing its cores; they are not asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${LOAD_SECONDS:-10}
threads=${LOAD_THREADS:-2}
connections=${LOAD_CONNECTIONS:-50}
churn_seconds=${CHURN_SECONDS:-30}
churn_workers=${CHURN_WORKERS:-4}
sample_every=${RSS_SAMPLE_SECONDS:-3}
store=${LOAD_STORE:-memory://}
features=${LOAD_FEATURES:-}

if ! command -v wrk >/dev/null; then
  echo "==> installing wrk"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

echo "==> building the example server (release)"
cargo build --release --example server ${features:+--features "$features"}
binary=target/release/examples/server

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME ARGS...: starts the server on a free port; sets $addr and $pid.
start_server() {
  local name=$1
  shift
  RUST_LOG=warn "$binary" --addr 127.0.0.1:0 --store "$store" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  addr=
  for _ in $(seq 1 300); do
    addr=$(sed -n 's#^listening on http://##p' "$work/$name.out")
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.err" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "server $name did not start" >&2; exit 1; }
}

login() { # ADDR -> prints the access token
  curl -sf -X POST "http://$1/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email":"demo@example.com","password":"demo-password","device_name":"load"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# run_wrk LABEL URL [HEADER]: prints a summary line and records "LABEL RPS NON2XX" in $work/results.
run_wrk() {
  local label=$1 url=$2 header=${3:-}
  local out="$work/wrk-$label.txt"
  if [ -n "$header" ]; then
    wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -H "$header" "$url" >"$out"
  else
    wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$url" >"$out"
  fi
  local rps non2xx p99 total
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$out")
  total=$(awk '/requests in/ {print $1}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  printf '%-14s %12s req/s  p99 %-8s  %s requests, %s non-2xx\n' "$label" "$rps" "$p99" "$total" "${non2xx:-0}"
  echo "$label $rps ${non2xx:-0} $total" >>"$work/results"
}

echo "==> throughput: wrk -t$threads -c$connections -d${seconds}s, store $store"
start_server throughput
token=$(login "$addr")
run_wrk authenticated "http://$addr/api/v1/user" "Authorization: Bearer $token"
run_wrk rejected-401 "http://$addr/api/v1/user"
run_wrk baseline "http://$addr/healthz"
read -r _ _ auth_non2xx auth_total < <(grep '^authenticated ' "$work/results")
read -r _ _ rejected_non2xx rejected_total < <(grep '^rejected-401 ' "$work/results")
if [ "$auth_non2xx" != 0 ]; then
  echo "FAILED: $auth_non2xx of $auth_total authenticated requests were not 200" >&2
  exit 1
fi
if [ "$rejected_non2xx" != "$rejected_total" ]; then
  echo "FAILED: requests without a token got a 2xx" >&2
  exit 1
fi
echo "server RSS after the throughput runs: $(rss_kib "$pid") KiB"
kill "$pid"

echo "==> churn: ${churn_seconds}s, $churn_workers workers, 2 s tokens, 1 s pruner"
echo "    each worker, as its own user: refresh (a new pair; the old one is left to expire), 20 requests with"
echo "    the new access token; every 10th round logs out (every token of the user), checks the token is"
echo "    dead, and logs in again"
users=()
for n in $(seq 0 $((churn_workers - 1))); do users+=(--user "churn$n@example.com:password-$n"); done
start_server churn --access-ttl 2 --refresh-ttl 2 --prune-interval 1 "${users[@]}"
churn_pid=$pid
cat >"$work/churn.py" <<'EOF'
import http.client, json, sys, threading, time

host, port = sys.argv[1].rsplit(":", 1)
deadline = time.monotonic() + float(sys.argv[2])
workers = int(sys.argv[3])
totals = {"logins": 0, "refreshes": 0, "requests": 0, "logouts": 0, "unexpected": 0}
lock = threading.Lock()

def worker(n):
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    count = dict.fromkeys(totals, 0)

    def call(method, path, expected, token=None, body=None):
        headers = {"Content-Type": "application/json"} if body else {}
        if token:
            headers["Authorization"] = "Bearer " + token
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != expected:
            count["unexpected"] += 1
            print(f"worker {n}: {method} {path} -> {response.status} {data[:200]!r}", file=sys.stderr)
            return None
        return json.loads(data) if data else None

    def login():
        count["logins"] += 1
        body = json.dumps({"email": f"churn{n}@example.com", "password": f"password-{n}", "device_name": "churn"})
        return call("POST", "/api/v1/auth/login", 200, body=body)

    pair = login()
    rounds = 0
    while pair and time.monotonic() < deadline:
        rounds += 1
        pair = call("POST", "/api/v1/auth/refresh", 200, token=pair["refresh_token"])
        if not pair:
            break
        count["refreshes"] += 1
        for _ in range(20):
            call("GET", "/api/v1/user", 200, token=pair["access_token"])
            count["requests"] += 1
        if rounds % 10 == 0:
            call("POST", "/api/v1/auth/logout", 200, token=pair["access_token"])
            count["logouts"] += 1
            call("GET", "/api/v1/user", 401, token=pair["access_token"])
            pair = login()
    with lock:
        for key, value in count.items():
            totals[key] += value

threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("{logins} logins, {refreshes} refreshes, {requests} authenticated requests, {logouts} logouts, "
      "{unexpected} unexpected answers".format(**totals))
sys.exit(1 if totals["unexpected"] else 0)
EOF
python3 "$work/churn.py" "$addr" "$churn_seconds" "$churn_workers" >"$work/churn.txt" &
churn=$!
idle=$(rss_kib "$churn_pid")
samples=()
while sleep "$sample_every" && kill -0 "$churn" 2>/dev/null; do
  samples+=("$(rss_kib "$churn_pid")")
done
churn_status=0
wait "$churn" || churn_status=$?
sleep 3 # the last sessions expire and are pruned
samples+=("$(rss_kib "$churn_pid")")
cat "$work/churn.txt"
first=${samples[0]}
last=${samples[${#samples[@]}-1]}
max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -n1)
echo "VmRSS before churn ${idle} KiB; every ${sample_every}s during it (KiB): ${samples[*]}"
echo "VmRSS first ${first} KiB, last ${last} KiB, max ${max} KiB"
if [ "$churn_status" -ne 0 ]; then
  echo "FAILED: unexpected answers during churn" >&2
  exit 1
fi

echo "==> summary"
awk '{printf "%-14s %12s req/s\n", $1, $2}' "$work/results"
echo "churn RSS: first ${first} KiB, last ${last} KiB, max ${max} KiB"
