#!/usr/bin/env bash
# Benchmark shoal-kit's session layer against a raw client of each store doing the same
# GET + SET, interleaved request by request in one run (crates/shoal-kit/examples/kit_bench.rs).
#
# What a request costs is measured with everything on one core: the benchmark, and the stores'
# servers serving it. A request then costs the CPU time it takes (client, server and kernel),
# and the figure no longer depends on how fast an idle core wakes up, which on this kind of
# machine moves a loopback round trip between about 25 and 80 µs from one minute to the next.
#   - memcached and Redis: private servers started here on free loopback ports, pinned to that
#     core (memcached with one worker thread; Redis keeping nothing on disk), stopped at exit;
#   - PostgreSQL: the machine's server (SHOAL_TEST_DATABASE_URL); the benchmark pins the
#     server processes of its own connections (found by application_name) when it may;
#   - SQLite: in the benchmark's process.
# BENCH_CORE picks the core (default: the last one this shell may use). BENCH_PIN=0 runs
# unpinned against the test URLs (scripts/services.sh) instead.
# BENCH_OPS (requests per side per round, default 500) and BENCH_ROUNDS (default 25) tune it;
# BENCH_STORES=redis,memcached,... picks stores; BENCH_ONLY=raw or BENCH_ONLY=layer runs one
# side alone, for profiling.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"

# shellcheck source=../scripts/services.sh
. scripts/services.sh
cargo build --quiet --release -p shoal-kit --example kit_bench
bench="$target/release/examples/kit_bench"

if [ "${BENCH_PIN:-1}" = 0 ]; then
    exec "$bench"
fi
if ! command -v taskset >/dev/null 2>&1; then
    echo "kit.sh: taskset is missing (util-linux); running unpinned against the test URLs" >&2
    exec "$bench"
fi

core="${BENCH_CORE:-$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')}"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits until server $2 (a pid) answers on port $1; fails if it exits first (another program
# took the port between free_port and its start, say).
wait_port() {
    for _ in $(seq 1 100); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "kit.sh: the server for port $1 exited; run again" >&2
            return 1
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "kit.sh: nothing answers on 127.0.0.1:$1" >&2
    return 1
}
servers=()
cleanup() {
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

port="$(free_port)"
taskset -c "$core" memcached -l 127.0.0.1 -p "$port" -t 1 -m 64 -u "$(id -un)" &
servers+=($!)
wait_port "$port" "$!"
export SHOAL_TEST_MEMCACHED_URL="memcache://127.0.0.1:$port"

if command -v redis-server >/dev/null 2>&1; then
    port="$(free_port)"
    taskset -c "$core" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --loglevel warning &
    servers+=($!)
    wait_port "$port" "$!"
    export SHOAL_TEST_REDIS_URL="redis://127.0.0.1:$port"
else
    echo "kit.sh: no redis-server here; Redis is measured unpinned at $SHOAL_TEST_REDIS_URL" >&2
fi

echo "everything measured runs on core $core" >&2
BENCH_PIN_CORE="$core" taskset -c "$core" "$bench"
