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

declare -A times
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
