#!/usr/bin/env python3
"""Prints the median of every criterion benchmark under target/criterion (the last run of each), and
the ratios BENCHMARKS.md quotes when both sides are present. Usage: scripts/bench-medians.py [filter]
(CRITERION_DIR: another target directory's criterion folder)."""
import json, os, pathlib, sys

default_root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
root = pathlib.Path(os.environ.get("CRITERION_DIR") or default_root)
only = sys.argv[1] if len(sys.argv) > 1 else ""
medians = {}
for estimates in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((estimates.parent / "benchmark.json").read_text())
    name = bench["full_id"]
    if only in name:
        medians[name] = json.loads(estimates.read_text())["median"]["point_estimate"]

def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 10_000 else f"{ns:.0f} ns"

for name, ns in medians.items():
    print(f"{name:70} {fmt(ns):>12}")

ratios = [
    ("request/token_auth_valid", "request/ideal_valid"),
    ("request/token_auth_valid_spread", "request/ideal_valid_spread"),
    ("request/token_auth_valid_spread_100k", "request/ideal_valid_spread_100k"),
    ("request/token_auth_invalid_secret", "request/ideal_valid"),
    ("request/token_auth_unknown_id", "request/ideal_valid"),
    ("request/token_auth_missing_header", "request/tower_http_bearer"),
    ("request/jwt_hs256_valid", "request/token_auth_valid"),
    ("request/token_auth_valid_prometheus", "request/token_auth_valid"),
    ("threads/token_auth_valid_2t", "threads/token_auth_valid_1t"),
    ("threads/ideal_valid_2t", "threads/ideal_valid_1t"),
    ("store/track_last_used/seen=1000000", "store/track_last_used/seen=10000"),
    ("store/prune_one_user/expired=20000", "store/prune_one_user/expired=10000"),
    ("store/prune_one_user/expired=40000", "store/prune_one_user/expired=20000"),
    ("store/small_user_logout_during_big_logouts", "store/small_user_logout_alone"),
]
print()
for a, b in ratios:
    if a in medians and b in medians:
        print(f"{a} / {b}: {medians[a] / medians[b]:.2f}")
