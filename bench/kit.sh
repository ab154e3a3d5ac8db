#!/usr/bin/env bash
# Benchmark shoal-kit's session layer against a raw client of each store doing the same
# GET + SET, interleaved round by round in one run (crates/shoal-kit/examples/kit_bench.rs).
# Starts memcached when missing and uses the test URLs (scripts/services.sh); a store whose
# URL is empty is reported as not run. BENCH_OPS (requests per round, default 500) and
# BENCH_ROUNDS (default 25; many short rounds cancel the machine's drift) tune it. BENCH_ONLY=raw
# or BENCH_ONLY=layer runs one side alone, for profiling.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# shellcheck source=../scripts/services.sh
. scripts/services.sh
exec cargo run --quiet --release -p shoal-kit --example kit_bench
