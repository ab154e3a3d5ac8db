#!/usr/bin/env bash
# Benchmark shoal's router against nginx and haproxy, and shoal with --metrics
# scraped every second against shoal without (see bench/router.py for what is
# measured and how). Installs what is missing, then runs the harness:
#   - nginx, haproxy, wrk, curl: Debian packages (apt-get)
#   - bench_backend: `cargo build --release -p shoal-router --example bench_backend`,
#                    unless BACKEND_BIN is set
#   - shoal:         `cargo build --release -p shoal`, unless SHOAL_BIN is set; when it
#                    does not build or has no router yet, the harness skips shoal
# Extra arguments go to router.py (e.g. --rounds 5); BENCH_* variables
# (BENCH_ROUNDS, BENCH_SECONDS, BENCH_PROXIES, ...) are read by router.py.
# Takes about 3 minutes with the defaults (3 rounds of 10 s for each of shoal,
# shoal-metrics, nginx and haproxy); BENCH_PROXIES=shoal,nginx,haproxy skips
# the metrics run.
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
for tool in nginx haproxy wrk curl; do
    # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        missing+=("$tool")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "router.sh: installing ${missing[*]} (apt)" >&2
    apt_install "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"

if [ -z "${BACKEND_BIN:-}" ]; then
    echo "router.sh: building bench_backend" >&2
    cargo build --release -p shoal-router --example bench_backend >&2
    BACKEND_BIN="$target/release/examples/bench_backend"
fi

if [ -z "${SHOAL_BIN:-}" ]; then
    echo "router.sh: building shoal" >&2
    if ! cargo build --release -p shoal >&2; then
        echo "router.sh: shoal did not build; the benchmark will skip it" >&2
    fi
    SHOAL_BIN="$target/release/shoal"
fi

export BACKEND_BIN SHOAL_BIN
exec python3 "$repo/bench/router.py" "$@"
