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
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null | python3 -c '
import sys
def counts(line):
    # The event columns: numbers with thousands separators, "(x%)" after some, "." for zero.
    out = []
    for token in line.split():
        if token.startswith("("):
            continue
        if token == ".":
            out.append(0)
        elif token.replace(",", "").isdigit():
            out.append(int(token.replace(",", "")))
        else:
            break
    return out
lines = sys.stdin.read().splitlines()
total = next(counts(l) for l in lines if l.rstrip().endswith("auth::one_request"))
entry = next(counts(l) for l in lines if "fn one_request<S, B>" in l)
calls = entry[0] / 4  # the function entry runs 4 instructions per call
ir, dr, dw, i1, d1r, d1w, ilr, dlr, dlw = total[:9]
print(f"{sys.argv[1]:40} {ir/calls:10.0f} {(d1r+d1w)/calls:8.2f} {(dlr+dlw)/calls:8.2f} {calls:8.0f}")
' "$bench"
  rm -f "$out"
done
