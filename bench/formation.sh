#!/usr/bin/env bash
# Benchmark shoal against foreman and honcho (see bench/formation.py for what
# is measured). Installs what is missing, then runs the harness:
#   - foreman: Debian package ruby-foreman (apt-get), unless FOREMAN_BIN is set
#   - honcho:  PyPI honcho ${HONCHO_VERSION} in a venv under
#              ${XDG_CACHE_HOME:-~/.cache}/shoal-bench, unless HONCHO_BIN is set
#   - shoal:   `cargo build --release -p shoal`, unless SHOAL_BIN is set
# Extra arguments go to formation.py (e.g. --rounds 3); BENCH_* variables
# (BENCH_ROUNDS, BENCH_LINES, BENCH_TOOLS, ...) are read by formation.py.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/shoal-bench"
HONCHO_VERSION="${HONCHO_VERSION:-2.0.0}"
tools="${BENCH_TOOLS:-shoal,foreman,honcho}"

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

wants() { [[ ",$tools," == *",$1,"* ]]; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y "$@" >&2; then
        "${sudo[@]}" apt-get update >&2
        "${sudo[@]}" apt-get install -y "$@" >&2
    fi
}

ensure_foreman() {
    if [ -n "${FOREMAN_BIN:-}" ]; then return; fi
    if ! command -v foreman >/dev/null 2>&1; then
        echo "formation.sh: installing foreman (apt: ruby-foreman)" >&2
        apt_install ruby-foreman
    fi
    FOREMAN_BIN="$(command -v foreman)"
}

ensure_honcho() {
    if [ -n "${HONCHO_BIN:-}" ]; then return; fi
    local venv="$cache/venv"
    if [ ! -x "$venv/bin/honcho" ]; then
        echo "formation.sh: installing honcho $HONCHO_VERSION into $venv" >&2
        mkdir -p "$cache"
        if ! python3 -m venv "$venv" >&2; then
            apt_install python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv" >&2
        fi
        "$venv/bin/pip" install --quiet --disable-pip-version-check "honcho==$HONCHO_VERSION" >&2
    fi
    HONCHO_BIN="$venv/bin/honcho"
}

ensure_shoal() {
    if [ -n "${SHOAL_BIN:-}" ]; then return; fi
    echo "formation.sh: building shoal (cargo build --release -p shoal)" >&2
    cargo build --release -p shoal >&2
    SHOAL_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/shoal"
}

if wants foreman; then ensure_foreman; fi
if wants honcho; then ensure_honcho; fi
if wants shoal; then ensure_shoal; fi

export SHOAL_BIN="${SHOAL_BIN:-}" FOREMAN_BIN="${FOREMAN_BIN:-}" HONCHO_BIN="${HONCHO_BIN:-}"
export BENCH_TOOLS="$tools"
exec python3 "$repo/bench/formation.py" "$@"
