#!/usr/bin/env bash
# Runs Schemathesis (pip install schemathesis) against the example server with its OpenAPI document,
# --checks all and every phase, stateful included. Usage: .ci/schemathesis.sh [PATH_TO_SERVER_BINARY]
# (default: target/debug/examples/server, built with `cargo build --example server`). Exits non-zero on
# any failure. Prints the figures (cases generated, passed, failed).
set -euo pipefail
cd "$(dirname "$0")/.."
server="${1:-${CARGO_TARGET_DIR:-target}/debug/examples/server}"
port="${SCHEMATHESIS_PORT:-18080}"
base="http://127.0.0.1:$port"

"$server" --addr "127.0.0.1:$port" \
  --user alice@example.com:alice-password --user bob@example.com:bob-password \
  --user carol@example.com:carol-password --user demo@example.com:demo-password \
  >/tmp/schemathesis-server.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$base/healthz" >/dev/null || { echo "the example server did not start:" >&2; cat /tmp/schemathesis-server.log >&2; exit 1; }

login() { # email password field
  curl -fsS -X POST "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\",\"device_name\":\"schemathesis\"}" \
    | python3 -c "import json, sys; print(json.load(sys.stdin)['$3'])"
}
ALICE_ACCESS_TOKEN="$(login alice@example.com alice-password access_token)"
BOB_ACCESS_TOKEN="$(login bob@example.com bob-password access_token)"
CAROL_REFRESH_TOKEN="$(login carol@example.com carol-password refresh_token)"
DEMO_ACCESS_TOKEN="$(login demo@example.com demo-password access_token)"
export ALICE_ACCESS_TOKEN BOB_ACCESS_TOKEN CAROL_REFRESH_TOKEN DEMO_ACCESS_TOKEN

schemathesis --config-file .ci/schemathesis.toml run "$base/openapi.json" --url "$base" \
  --checks all --phases examples,coverage,fuzzing,stateful --max-time "${SCHEMATHESIS_MAX_TIME:-150}" \
  --report "${SCHEMATHESIS_REPORTS:-junit}" --report-dir "${SCHEMATHESIS_REPORT_DIR:-target/schemathesis}"
