#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (header parser and whole layer), each for FUZZ_SECONDS seconds
# (default 60), and prints how many inputs each one executed.
#
#   scripts/fuzz.sh                    # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh layer
#
# Installs cargo-fuzz when missing. libFuzzer builds need nightly-only rustc flags (-Zsanitizer=address):
# a rustup `nightly` toolchain is used when there is one, otherwise the stable compiler is told to accept
# them with RUSTC_BOOTSTRAP=1 (set FUZZ_TOOLCHAIN=stable to force that). Crashes are saved under
# fuzz/artifacts/TARGET/ and make the script fail; the corpus grows in fuzz/corpus/TARGET/ (both ignored
# by git).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(parse_header layer)
fi

if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

toolchain=${FUZZ_TOOLCHAIN:-}
if [ -z "$toolchain" ]; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=nightly; else toolchain=stable; fi
fi
cargo_cmd=(cargo "+$toolchain")
if [ "$toolchain" != nightly ]; then
  export RUSTC_BOOTSTRAP=1
fi
echo "==> toolchain: $("${cargo_cmd[@]}" --version)${RUSTC_BOOTSTRAP:+ (RUSTC_BOOTSTRAP=1)}"

seed() { # target file contents
  printf '%b' "$3" >"fuzz/corpus/$1/$2"
}

summary=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  if [ ! -d "$corpus" ]; then
    mkdir -p "$corpus"
    case "$target" in
      parse_header)
        seed "$target" ok 'Bearer 1|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66'
        seed "$target" spaces '  bearer    7|ab|cd\t'
        seed "$target" basic 'Basic dXNlcjpwYXNz'
        seed "$target" big-id 'Bearer 18446744073709551616|s'
        ;;
      layer)
        # First byte: flags (1 = gRPC, 2 = no header); then one Authorization value per line.
        seed "$target" ok '\x00Bearer $A'
        seed "$target" zeros '\x00bearer   000$A'
        seed "$target" refresh '\x00Bearer $R'
        seed "$target" two '\x00Bearer $A\nBearer $A'
        seed "$target" grpc '\x01Bearer $I|wrong'
        ;;
    esac
  fi
  log=$(mktemp)
  echo "==> fuzzing $target for ${seconds}s"
  status=0
  "${cargo_cmd[@]}" fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -dict=fuzz/auth.dict \
    >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done |==[0-9]+==ERROR|SUMMARY|thread .* panicked)' "$log" || true
  runs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n1 || true)
  if [ "$status" -ne 0 ] || [ -z "$runs" ]; then
    tail -n 40 "$log"
    echo "FAILED: $target (see fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  summary+=("$target: $runs(s)")
  rm -f "$log"
done

echo "==> summary"
printf '%s\n' "${summary[@]}"
