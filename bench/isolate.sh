#!/usr/bin/env bash
# Start-up time of `shoal start --isolate` for a 100 MB app directory (2,000 files of 50 KB in
# 20 directories): from running shoal to every instance having printed its first line from its
# copy, with 1 and with 4 instances. Three ways, interleaved round by round:
#   none  - no --isolate: every instance runs in the app directory itself (the floor);
#   cow   - --isolate, copy-on-write: an overlay mount per instance start;
#   copy  - --isolate, plain copy: the same files in a directory whose name holds a `,`, which
#           overlayfs cannot be given, so shoal falls back to copying (as it does where the
#           kernel refuses an overlay).
# The apps sit two levels below a fresh temporary directory: the three directories above each,
# which every copy mirrors with links, hold a few entries (as a checkout's usually do; a busy
# /tmp directly above costs a link per entry). Copies go to shoal's runtime directory, under a
# TMPDIR in that temporary directory (on the file system of /tmp). BENCH_ROUNDS rounds
# (default 5); prints every measurement and the medians, and checks that nothing is left.
#
# Then whole `shoal verify` runs over the same two app directories, each with a web app
# (python3 -m http.server) answering 15 requests (listings and files) in the two baseline runs
# and 3 shuffled rounds over 3 web instances, with their restarts: every start of every
# instance gets a fresh copy, copy-on-write in `cow`, plain in `copy` (the report's first lines
# say which). BENCH_VERIFY_ROUNDS runs of each (default 3), interleaved, the same seed for
# both; prints the wall time and the CPU time (user + system, shoal and its instances) of each
# run and the medians. BENCH_WHAT=start or BENCH_WHAT=verify runs one part only.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -z "${SHOAL_BIN:-}" ]]; then
    cargo build --quiet --release -p shoal
    SHOAL_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/shoal"
fi
rounds="${BENCH_ROUNDS:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# shoal's runtime directories (and so the copies) of this benchmark alone.
mkdir "$work/tmp"
export TMPDIR="$work/tmp"

# One set of files, hard-linked into both app directories (same bytes, same file system).
mkdir -p "$work/files"
for d in $(seq 1 20); do
    mkdir -p "$work/files/dir$d"
    for f in $(seq 1 100); do
        head -c 50000 /dev/urandom >"$work/files/dir$d/file$f.bin"
    done
done
procfile="worker: sh -c 'echo up; exec sleep 600'"
for app in "$work/cow/src/app" "$work/copy/src/app,copy"; do
    mkdir -p "$(dirname "$app")"
    cp -al "$work/files" "$app"
    echo "$procfile" >"$app/Procfile"
done
echo "app directory: $(du -sb "$work/cow/src/app" | cut -f1) bytes, $(find "$work/cow/src/app" -type f | wc -l) files"

# Prints the milliseconds until N instances said `up`, and stops shoal.
measure() {
    local mode=$1 n=$2 dir flags=()
    case $mode in
        none) dir="$work/cow/src/app" ;;
        cow) dir="$work/cow/src/app"; flags=(--isolate) ;;
        copy) dir="$work/copy/src/app,copy"; flags=(--isolate) ;;
    esac
    local out="$work/out.$mode"
    local start end
    # What earlier runs wrote (a plain copy writes 100 MB per instance) is on disk first, so
    # that its writeback does not slow this run down.
    sync
    # Emptied here, not by the redirection below: that happens in the background child, and
    # the loop could read the previous run's lines first.
    : >"$out"
    start=$(date +%s%N)
    "$SHOAL_BIN" start "${flags[@]}" -f "$dir/Procfile" -m "worker=$n" --no-color >"$out" 2>&1 &
    local pid=$!
    until [[ $(grep -c '| up$' "$out" 2>/dev/null || true) -ge $n ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench/isolate.sh: shoal exited early ($mode, $n):" >&2
            cat "$out" >&2
            exit 1
        fi
        sleep 0.002
    done
    end=$(date +%s%N)
    kill -INT "$pid"
    wait "$pid" || true
    case $mode in
        cow) grep -q 'copy-on-write copy' "$out" || { echo "bench/isolate.sh: not copy-on-write:" >&2; cat "$out" >&2; exit 1; } ;;
        copy) grep -q 'runs in a copy of' "$out" || { echo "bench/isolate.sh: not a plain copy:" >&2; cat "$out" >&2; exit 1; } ;;
    esac
    if find "$TMPDIR" -name isolate | grep -q .; then
        echo "bench/isolate.sh: copies left behind after $mode" >&2
        exit 1
    fi
    echo $(((end - start) / 1000000))
}

what="${BENCH_WHAT:-start verify}"
declare -A times
[[ " $what " == *" start "* ]] || rounds=0
for round in $(seq 1 "$rounds"); do
    for n in 1 4; do
        for mode in none cow copy; do
            ms=$(measure "$mode" "$n")
            times[$mode.$n]+="$ms "
            echo "round $round: $mode, $n instance(s): $ms ms"
        done
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
if [[ $rounds -gt 0 ]]; then
    echo
    echo "| instances | no --isolate | copy-on-write | plain copy | copy / copy-on-write |"
    echo "|---|---|---|---|---|"
    for n in 1 4; do
        none=$(echo "${times[none.$n]}" | median)
        cow=$(echo "${times[cow.$n]}" | median)
        copy=$(echo "${times[copy.$n]}" | median)
        ratio=$(awk -v a="$copy" -v b="$cow" 'BEGIN {printf "%.1fx", a / (b > 0 ? b : 1)}')
        echo "| $n | $none ms | $cow ms | $copy ms | $ratio |"
    done
fi

[[ " $what " == *" verify "* ]] || exit 0

# verify: the app serves its own directory; the scenario reads listings and files.
scenario="$work/scenario.http"
{
    echo 'GET /'
    for d in 1 4 7 10 13 16 19; do
        printf '\n###\nGET /dir%d/\n\n###\nGET /dir%d/file%d.bin\n' "$d" "$d" "$((d * 5))"
    done
} >"$scenario"
for app in "$work/cow/src/app" "$work/copy/src/app,copy"; do
    echo "web: python3 -m http.server \"\$PORT\" --bind 127.0.0.1" >"$app/Procfile"
done
# Prints the run's wall milliseconds and CPU milliseconds (user + system, with the instances).
verify_run() {
    local mode=$1 dir out="$work/verify.$1"
    case $mode in
        cow) dir="$work/cow/src/app"; want='copy-on-write copies of the app' ;;
        copy) dir="$work/copy/src/app,copy"; want='plain copies of the app' ;;
    esac
    sync
    local start end
    start=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$work/time.$mode" \
        "$SHOAL_BIN" verify -f "$dir/Procfile" "$scenario" --seed 1 >"$out" 2>&1 || true
    end=$(date +%s%N)
    if ! grep -q '^shoal verify: stateless' "$out" || ! grep -q "$want" "$out"; then
        echo "bench/isolate.sh: verify ($mode) did not end stateless with $want:" >&2
        cat "$out" >&2
        exit 1
    fi
    if find "$TMPDIR" -maxdepth 1 -name 'shoal-verify-*' | grep -q .; then
        echo "bench/isolate.sh: verify ($mode) left its copies behind" >&2
        exit 1
    fi
    echo "$(((end - start) / 1000000)) $(awk '{printf "%d", ($1 + $2) * 1000}' "$work/time.$mode")"
}
verify_rounds="${BENCH_VERIFY_ROUNDS:-3}"
echo
echo "shoal verify, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$verify_rounds"); do
    for mode in cow copy; do
        read -r wall cpu <<<"$(verify_run "$mode")"
        times[verify.$mode]+="$wall "
        times[verify_cpu.$mode]+="$cpu "
        echo "verify round $round: $mode: $wall ms, $cpu ms of CPU ($(grep -o '[0-9]* restarts\?\b' "$work/verify.$mode" | tail -1))"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| shoal verify | copy-on-write | plain copy | copy / copy-on-write |"
echo "|---|---|---|---|"
for kind in verify verify_cpu; do
    cow=$(echo "${times[$kind.cow]}" | median)
    copy=$(echo "${times[$kind.copy]}" | median)
    ratio=$(awk -v a="$copy" -v b="$cow" 'BEGIN {printf "%.1fx", a / (b > 0 ? b : 1)}')
    if [[ $kind == verify ]]; then label=wall; else label="CPU (user + system)"; fi
    echo "| $label | $cow ms | $copy ms | $ratio |"
done
