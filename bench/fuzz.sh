#!/usr/bin/env bash
# Runs the parsers' property tests with many cases, in release mode: the Procfile, `.env` and
# formation-spec parsers (crates/shoal-procfile/tests/properties.rs) and the scenario parsers
# with the checks and request building after them (crates/shoal-verify/src/scenario/
# properties.rs). CI runs the same tests with proptest's default of 256 cases; this is the
# "fuzz" pass: no input may panic, hang, or break the round trips those tests state.
#
# Each suite runs under a time limit, so a hang is reported as one instead of waiting for ever.
# A failing case is shrunk by proptest and saved under the crate's proptest-regressions/;
# keep the input as a regular unit test next to the fix.
#
# Environment (defaults in brackets):
#   PROPTEST_CASES   cases per property [100000]
#   FUZZ_TIMEOUT     seconds per suite before it counts as hung [3600]
# The release profile's fat LTO is turned off here: it buys nothing for these tests and costs
# minutes of linking on this 2-core machine (opt-level stays 3).
# Prints one summary line at the end, e.g.
#   fuzz: 18 tests, 100000 cases per property: 18 passed, 0 failed (procfile 41 s, verify 95 s)
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PROPTEST_CASES="${PROPTEST_CASES:-100000}"
limit="${FUZZ_TIMEOUT:-3600}"
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

echo "fuzz.sh: building the property tests (release)" >&2
if ! cargo test --release --locked --no-run -p shoal-procfile --test properties >&2 ||
    ! cargo test --release --locked --no-run -p shoal-verify --lib >&2; then
    echo "fuzz: the property tests do not build" >&2
    exit 2
fi

passed=0
failed=0
times=()
status=0

# run NAME ARGS...: one suite under the time limit; counts its properties from libtest's
# result line.
run() {
    local name="$1"
    shift
    local out started elapsed code
    out="$(mktemp)"
    started=$(date +%s)
    echo "fuzz.sh: $name: $PROPTEST_CASES cases per property" >&2
    # timeout signals its whole process group, so the test binary under cargo stops too.
    timeout --kill-after=10 "$limit" cargo test --release --locked -q "$@" 2>&1 | tee "$out" >&2
    code=${PIPESTATUS[0]}
    elapsed=$(($(date +%s) - started))
    if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
        echo "fuzz: $name: still running after ${limit} s: a hang, or raise FUZZ_TIMEOUT" >&2
        failed=$((failed + 1))
        status=1
    else
        local result
        result="$(grep -E '^test result:' "$out" | tail -1)"
        passed=$((passed + $(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$result")))
        failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$result")))
        if [ "$code" -ne 0 ]; then status=1; fi
    fi
    # The tests' own time (cargo's check and the build lock left out), else the wall time.
    local took
    took="$(grep -E '^test result:' "$out" | tail -1 | sed -nE 's/.*finished in ([0-9.]+)s.*/\1/p')"
    times+=("$name ${took:-$elapsed} s")
    rm -f "$out"
}

run procfile -p shoal-procfile --test properties
run verify -p shoal-verify --lib scenario::properties

summary="$(IFS=,; echo "${times[*]}" | sed 's/,/, /g')"
echo "fuzz: $((passed + failed)) tests, $PROPTEST_CASES cases per property: $passed passed, $failed failed ($summary)"
exit "$status"
