#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time on its committed corpus (new inputs found
# go to a scratch copy, not the repository). Any crash fails the run; its input is kept in
# artifacts/fuzz/ and should become a regression test and a corpus entry.
#   FUZZ_SECONDS=20 bash scripts/fuzz.sh [target …]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_rust
ensure_cargo_fuzz || { echo "fuzz: 0 passed, 1 failed"; exit 1; }

SECONDS_EACH=${FUZZ_SECONDS:-20}
cd fuzz
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
if ! cargo +nightly fuzz build 2>&1 | tail -5; then
  echo "fuzz: build failed"; echo "fuzz: 0 passed, 1 failed"; exit 1
fi
# Run the built binaries directly: `cargo fuzz run` would build again for every target.
bin=target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release
passed=0 failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
out=$(cd .. && pwd)/artifacts/fuzz
mkdir -p "$out"
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "corpus/$t"
  # New inputs go to the scratch folder (the first); the committed corpus is only read.
  if "$bin/$t" -max_total_time="$SECONDS_EACH" -max_len=70000 -rss_limit_mb=2048 \
      -artifact_prefix="$out/$t-" "$scratch/$t" "corpus/$t" > "$out/$t.log" 2>&1; then
    echo "fuzz $t: ok ($(grep -Eo 'Done [0-9]+ runs' "$out/$t.log" | tail -1))"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FAILED (see artifacts/fuzz/$t.log)"; tail -30 "$out/$t.log"
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
