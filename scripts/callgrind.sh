#!/usr/bin/env bash
# Instructions and simulated cache misses per request, for benchmarks of benches/auth.rs (repeatable,
# whatever else the machine runs). Usage: scripts/callgrind.sh BENCH... (names under request/, e.g.
# token_auth_valid ideal_valid). Needs valgrind. Simulates a 2 MiB last-level cache.
set -euo pipefail
cd "$(dirname "$0")/.."
features="${FEATURES:-test-util}"
exe=$(CARGO_PROFILE_BENCH_DEBUG=true cargo bench --features "$features" --bench auth --no-run 2>&1 \
  | sed -n 's/.*Executable benches\/auth.rs (\(.*\))/\1/p' | tail -1)
printf '%-40s %10s %8s %8s %8s\n' benchmark Ir/req D1mr/req LLmr/req calls
for bench in "$@"; do
  out=$(mktemp)
  valgrind --tool=callgrind --cache-sim=yes --LL=2097152,16,64 --toggle-collect='*one_request*' \
    --callgrind-out-file="$out" "$exe" --bench "request/$bench\$" --profile-time 3 >/dev/null 2>&1
  python3 - "$out" "$bench" <<'PY'
import re, sys
# Only one_request (and what it calls) is collected, so the file's totals are the cost of the calls
# to it; their number is the sum of the `calls=` lines under every call site of one_request.
text = open(sys.argv[1]).read()
found = re.search(r"^c?fn=\((\d+)\) auth::one_request$", text, re.M)
if not found:
    sys.exit(f"{sys.argv[2]}: auth::one_request is not in the profile (is `request/{sys.argv[2]}` a benchmark name?)")
fn_id = found.group(1)
calls = sum(int(n) for n in re.findall(r"^cfn=\(" + fn_id + r"\)(?: .*)?\ncalls=(\d+)", text, re.M))
events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
totals = dict(zip(events, map(int, re.search(r"^totals: (.*)$", text, re.M).group(1).split())))
d1 = totals.get("D1mr", 0) + totals.get("D1mw", 0)
ll = totals.get("DLmr", 0) + totals.get("DLmw", 0)
print(f"{sys.argv[2]:40} {totals['Ir'] / calls:10.0f} {d1 / calls:8.2f} {ll / calls:8.2f} {calls:8d}")
PY
  rm -f "$out"
done
