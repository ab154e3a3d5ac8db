#!/usr/bin/env bash
# Times a whole `shoal verify` run of the noisy fixture (crates/shoal-verify/fixtures/noisy: a
# Node app, 20 requests, the two baseline runs and 3 shuffled rounds over 3 web instances with
# their restarts), from start to verdict, with the release build. BENCH_ROUNDS runs (default 5,
# seeds 1..N); prints every run and the median. Each run must end with the verdict stateless.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

cargo build --quiet --release -p shoal
shoal="${CARGO_TARGET_DIR:-$repo/target}/release/shoal"
fixture=crates/shoal-verify/fixtures/noisy
runs="${BENCH_ROUNDS:-5}"

times=()
for seed in $(seq 1 "$runs"); do
    start=$(date +%s%N)
    if ! "$shoal" verify -f "$fixture/Procfile" "$fixture/scenario.http" --seed "$seed" \
        >/tmp/shoal-bench-verify.out 2>&1; then
        echo "bench/verify.sh: run $seed did not end stateless:" >&2
        cat /tmp/shoal-bench-verify.out >&2
        exit 1
    fi
    end=$(date +%s%N)
    ms=$(((end - start) / 1000000))
    restarts=$(grep -o '[0-9]* restarts' /tmp/shoal-bench-verify.out | head -1)
    echo "run $seed: ${ms} ms (${restarts})"
    times+=("$ms")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
echo "VERIFY requests=20 rounds=3 web=3 runs=$runs median_ms=$median"
