#!/usr/bin/env bash
# Benchmark concurrency-aware routing (issue 14): shoal (p2c, and --max-in-flight 1)
# against nginx least_conn and haproxy leastconn + maxconn 1, in front of 4
# single-threaded instances with a heavy-tailed service time, under open-loop
# load at 50/80/95/130% of capacity (see bench/routing.py for what is measured).
# Installs what is missing, then runs the harness:
#   - nginx, haproxy: Debian packages (apt-get)
#   - shoal: `cargo build --release -p shoal --locked`, unless SHOAL_BIN is set;
#            when it does not build, the harness skips shoal
# Extra arguments go to routing.py; BENCH_* variables (BENCH_ROUNDS,
# BENCH_SECONDS, BENCH_TARGETS, ...) are read by routing.py.
# Takes about 15 minutes with the defaults (3 rounds; 12 s per level, 20 s at 130%).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y "$@" >&2; then
        "${sudo[@]}" apt-get update >&2
        "${sudo[@]}" apt-get install -y "$@" >&2
    fi
}

missing=()
for tool in nginx haproxy python3 taskset; do
    # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        case "$tool" in
            taskset) missing+=(util-linux) ;;
            *) missing+=("$tool") ;;
        esac
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "routing.sh: installing ${missing[*]} (apt)" >&2
    apt_install "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"

if [ -z "${SHOAL_BIN:-}" ]; then
    echo "routing.sh: building shoal" >&2
    if ! cargo build --release -p shoal --locked >&2; then
        echo "routing.sh: shoal did not build; the benchmark will skip it" >&2
    fi
    SHOAL_BIN="$target/release/shoal"
fi

export SHOAL_BIN
exec python3 "$repo/bench/routing.py" "$@"
