#!/usr/bin/env bash
# Times whole `shoal verify` runs, from start to verdict, with release builds, of two scenarios:
#
#   noisy   crates/shoal-verify/fixtures/noisy: a Node app, web only; 20 requests, the two
#           baseline runs and 3 shuffled rounds over 3 web instances with their restarts
#   digest  apps/digest/verify/journey.http on the reference app (SQLite, a fresh database per
#           run): 22 requests; web and worker, so the rounds run two workers and restart them
#           too, also while the URL job's page is polled
#
# each with the shoal of BENCH_NOW ("now", default HEAD: what is committed, without the
# uncommitted work of a shared tree) and with a "base" shoal that runs the shuffled rounds as
# before issue 15: the same commit with one instance of every type but web (DEFAULT_OTHERS = 1)
# and no worker restarted (the schedule plans none), patched into its copy of the source —
# the run time with workers restarted must stay within 1.5x of it. BENCH_BASE=REV compares
# with the shoal of another commit as it is instead (e.g. 4401b99^, before workers were
# restarted). Runs alternate base and now, seeds 1..BENCH_ROUNDS (default 5), the same seed for
# both. noisy has no worker: its ratio is the cost of the rest (the per-request look into the
# scratch directories). Every run must end stateless.
#
# Each shoal is built from `git archive REV` in a temporary directory, in the shared target
# directory under a profile of its own (bench-base, bench-now), so that it replaces no one's
# binary; BENCH_BASE_SHOAL=PATH or BENCH_NOW_SHOAL=PATH uses a shoal built elsewhere instead.
# digest is this tree's release build. Prints every run, then one line per scenario:
# VERIFY scenario=… base_ms=… now_ms=… (medians) ratio_of_medians=… median_ratio=… (the
# median of the per-seed ratios). About 5 minutes with the defaults, plus the builds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
runs="${BENCH_ROUNDS:-5}"
# Resolved once: others may commit while the two shoals build.
now_rev="$(git rev-parse --verify "${BENCH_NOW:-HEAD}^{commit}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo build --quiet --release -p digest-app
# A copy: another build in the shared target directory may replace it while this runs.
cp "$target/release/digest" "$work/digest"
digest="$work/digest"

# shoal_of NAME REV [untouched]: the shoal of REV, built as profile bench-NAME, copied into
# $work; with `untouched`, patched to run one instance of every other type and restart none.
shoal_of() {
    local name="$1" rev="$2" src="$work/$1-src"
    echo "bench/verify.sh: building the shoal of $rev ($(git rev-parse --short "$rev")) as $name${3:+, workers $3}" >&2
    mkdir "$src"
    # -m: the files get the time of extraction, not of the commit. cargo finds a profile's
    # build fresh unless a source is newer than it, and hashes path sources relative to the
    # workspace, so the sources of an older commit (or those of the last patched build, as
    # committed) would reuse the last build of the profile.
    git archive "$rev" | tar -x -m -C "$src"
    if [ "${3:-}" = untouched ]; then
        local run="$src/crates/shoal-verify/src/run.rs" schedule="$src/crates/shoal-verify/src/schedule.rs"
        grep -q 'pub const DEFAULT_OTHERS: u32 = 2;' "$run"
        grep -q '= if workers.is_empty() {' "$schedule"
        sed -i 's/pub const DEFAULT_OTHERS: u32 = 2;/pub const DEFAULT_OTHERS: u32 = 1;/' "$run"
        sed -i 's/= if workers.is_empty() {/= if true {/' "$schedule"
    fi
    printf '\n[profile.bench-%s]\ninherits = "release"\n' "$name" >>"$src/Cargo.toml"
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo build --quiet --profile "bench-$name" -p shoal)
    cp "$target/bench-$name/shoal" "$work/shoal-$name"
    rm -rf "$src"
}

if [ -n "${BENCH_BASE_SHOAL:-}" ]; then
    base="$BENCH_BASE_SHOAL"
else
    if [ -n "${BENCH_BASE:-}" ]; then
        shoal_of base "$BENCH_BASE"
    else
        shoal_of base "$now_rev" untouched
    fi
    base="$work/shoal-base"
fi
if [ -n "${BENCH_NOW_SHOAL:-}" ]; then
    now="$BENCH_NOW_SHOAL"
else
    shoal_of now "$now_rev"
    now="$work/shoal-now"
fi

noisy=crates/shoal-verify/fixtures/noisy

# run BINARY SCENARIO SEED: prints the run's milliseconds and its restarts line.
run() {
    local bin="$1" scenario="$2" seed="$3" out="$work/out" start end data
    data="$(mktemp -d "$work/data.XXXXXX")"
    start=$(date +%s%N)
    case "$scenario" in
        noisy)
            TMPDIR="$data" "$bin" verify -f "$noisy/Procfile" "$noisy/scenario.http" \
                --seed "$seed" >"$out" 2>&1 || true
            ;;
        digest)
            TMPDIR="$data" DIGEST_BIN="$digest" DATABASE_URL="sqlite://$data/digest.db" \
                "$bin" verify -f apps/digest/Procfile apps/digest/verify/journey.http \
                --seed "$seed" >"$out" 2>&1 || true
            ;;
    esac
    end=$(date +%s%N)
    rm -rf "$data"
    if ! grep -q '^shoal verify: stateless' "$out"; then
        echo "bench/verify.sh: $scenario with $bin, seed $seed, did not end stateless:" >&2
        cat "$out" >&2
        exit 1
    fi
    echo "$(((end - start) / 1000000)) $(grep -o '[0-9]* restarts\( ([^)]*)\)\?' "$out" | head -1)"
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

for scenario in noisy digest; do
    base_times=()
    now_times=()
    ratios=()
    for seed in $(seq 1 "$runs"); do
        result=$(run "$base" "$scenario" "$seed")
        read -r b b_restarts <<<"$result"
        result=$(run "$now" "$scenario" "$seed")
        read -r n n_restarts <<<"$result"
        echo "$scenario seed $seed: base ${b} ms (${b_restarts}), now ${n} ms (${n_restarts})"
        base_times+=("$b")
        now_times+=("$n")
        ratios+=("$(awk -v n="$n" -v b="$b" 'BEGIN {printf "%.2f", n / b}')")
    done
    b=$(printf '%s\n' "${base_times[@]}" | median)
    n=$(printf '%s\n' "${now_times[@]}" | median)
    r=$(printf '%s\n' "${ratios[@]}" | median)
    echo "VERIFY scenario=$scenario runs=$runs base_ms=$b now_ms=$n ratio_of_medians=$(awk -v n="$n" -v b="$b" 'BEGIN {printf "%.2f", n / b}') median_ratio=$r"
done
