#!/usr/bin/env bash
# Benchmark digest's worker pipeline against shell pipelines on the same file, side by side.
#
# nginx serves a file of random bytes from 127.0.0.1 (sendfile, access log off). Each round
# runs, in a rotating order:
#   digest   apps/digest/examples/pipeline_bench.rs: `digest_url` into a scratch file, exactly
#            as the worker does (download + SHA-256 + BLAKE3 + type scan + write), file removed
#   sha256   curl -s URL | sha256sum
#   openssl  curl -s URL | openssl dgst -sha256
# and checks that the three SHA-256 agree. Throughput is bytes / wall time of the whole
# command (process start included) in MB/s (10^6 bytes); the summary shows each median and
# the ratios digest/openssl (target >= 1.0x) and digest/sha256sum. Then the pipeline's peak
# resident memory (VmHWM) for the small and the large file (target: within 10%).
#
# Installs nginx, curl and openssl when missing (apt); builds the example with
# `cargo build --release -p digest-app --example pipeline_bench` unless DIGEST_BENCH_BIN is set.
# Environment (defaults in brackets):
#   BENCH_SIZE_MIB   the large file [1024]        BENCH_SMALL_MIB  the small file [64]
#   BENCH_ROUNDS     rounds [5]                   BENCH_PORT       nginx's port [18480]
#   BENCH_DIR        where files and scratch go, kept for the next run [a new temporary directory]
# The machine is shared (2 cores): compare figures from one run, and look at `uptime` first.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
size_mib="${BENCH_SIZE_MIB:-1024}"
small_mib="${BENCH_SMALL_MIB:-64}"
rounds="${BENCH_ROUNDS:-5}"
port="${BENCH_PORT:-18480}"

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
missing=()
for tool in nginx curl openssl sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        case "$tool" in sha256sum) missing+=(coreutils) ;; *) missing+=("$tool") ;; esac
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "digest.sh: installing ${missing[*]} (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y "${missing[@]}" >&2; then
        "${sudo[@]}" apt-get update >&2
        "${sudo[@]}" apt-get install -y "${missing[@]}" >&2
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

if [ -z "${DIGEST_BENCH_BIN:-}" ]; then
    echo "digest.sh: building pipeline_bench (release)" >&2
    cargo build --release -p digest-app --example pipeline_bench >&2
    DIGEST_BENCH_BIN="$target/release/examples/pipeline_bench"
fi

work="${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/digest-bench.XXXXXX")}"
mkdir -p "$work/www" "$work/scratch" "$work/nginx"
# nginx's worker runs as an unprivileged user when started as root: let it read the files.
chmod a+rx "$work" "$work/www"
nginx_pid=""
cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work/scratch"
    # A BENCH_DIR keeps its files for the next run.
    if [ -z "${BENCH_DIR:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

make_file() { # NAME MIB
    if [ ! -f "$work/www/$1" ] || [ "$(stat -c %s "$work/www/$1")" -ne $(($2 * 1048576)) ]; then
        echo "digest.sh: writing $2 MiB of random bytes to $1" >&2
        openssl rand -out "$work/www/$1" $(($2 * 1048576)) 2>/dev/null \
            || head -c $(($2 * 1048576)) /dev/urandom >"$work/www/$1"
    fi
    chmod a+r "$work/www/$1"
    cat "$work/www/$1" >/dev/null # into the page cache
}
make_file large.bin "$size_mib"
make_file small.bin "$small_mib"

cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $work/www;
    }
}
EOF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
for attempt in $(seq 1 600); do
    if curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$port/small.bin"; then break; fi
    if [ "$attempt" -eq 600 ] || ! kill -0 "$nginx_pid" 2>/dev/null; then
        echo "digest.sh: nginx did not start on port $port:" >&2
        tail -n 5 "$work/nginx/error.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
base="http://127.0.0.1:$port"

now() { date +%s.%N; }

# run NAME FILE -> prints "NAME SECONDS SHA256 [extra]"
run() {
    local name=$1 file=$2 url="$base/$2" start end out sha extra=""
    start=$(now)
    case "$name" in
        digest)
            out=$("$DIGEST_BENCH_BIN" "$url" "$work/scratch")
            sha=$(sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p' <<<"$out")
            extra=$(sed -n 's/.*\(max_rss_kib=[0-9]*\).*\(chunks=[0-9]*\).*\(max_chunk=[0-9]*\).*/\1 \2 \3/p' <<<"$out")
            ;;
        sha256) out=$(curl -s "$url" | sha256sum); sha=${out%% *} ;;
        openssl) out=$(curl -s "$url" | openssl dgst -sha256); sha=${out##* } ;;
    esac
    end=$(now)
    echo "$name $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }') $sha $extra"
}

bytes=$((size_mib * 1048576))
echo "digest.sh: $rounds rounds of ${size_mib} MiB from $base (nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')), $(nproc) cores, load:$(uptime | sed 's/.*load average://')"
echo "sha_ni: $(grep -q -w sha_ni /proc/cpuinfo && echo yes || echo no); openssl: $(openssl version | cut -d' ' -f1-2); sha256sum: $(sha256sum --version | head -1)"
results="$work/results"
: >"$results"
tools=(digest sha256 openssl)
for round in $(seq 1 "$rounds"); do
    for i in 0 1 2; do
        tool=${tools[$(((i + round) % 3))]}
        line=$(run "$tool" large.bin)
        echo "$round $line" >>"$results"
        read -r name seconds sha extra <<<"$line"
        printf '  round %d  %-8s %8.1f MB/s  %s\n' "$round" "$name" \
            "$(awk -v b="$bytes" -v s="$seconds" 'BEGIN { print b / s / 1e6 }')" "$extra"
    done
done

if [ "$(awk '{ print $4 }' "$results" | sort -u | wc -l)" -ne 1 ]; then
    echo "digest.sh: the SHA-256 digests differ:" >&2
    cat "$results" >&2
    exit 1
fi

median_mbs() { # TOOL
    awk -v t="$1" -v b="$bytes" '$2 == t { print b / $3 / 1e6 }' "$results" | sort -g \
        | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
digest_mbs=$(median_mbs digest)
sha_mbs=$(median_mbs sha256)
openssl_mbs=$(median_mbs openssl)
echo
echo "median of $rounds rounds, ${size_mib} MiB, MB/s (10^6 bytes/s, wall time of the whole command):"
printf '  digest pipeline (download + SHA-256 + BLAKE3 + scratch file)  %8.1f\n' "$digest_mbs"
printf '  curl | openssl dgst -sha256                                   %8.1f\n' "$openssl_mbs"
printf '  curl | sha256sum                                              %8.1f\n' "$sha_mbs"
printf '  digest / openssl pipeline    %.2fx  (target >= 1.0x)\n' "$(awk -v a="$digest_mbs" -v b="$openssl_mbs" 'BEGIN { print a / b }')"
printf '  digest / sha256sum pipeline  %.2fx\n' "$(awk -v a="$digest_mbs" -v b="$sha_mbs" 'BEGIN { print a / b }')"

echo
echo "peak resident memory of the digest pipeline (VmHWM of pipeline_bench, one process per file):"
small_rss=$("$DIGEST_BENCH_BIN" "$base/small.bin" "$work/scratch" | sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p')
large_rss=$("$DIGEST_BENCH_BIN" "$base/large.bin" "$work/scratch" | sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p')
printf '  %5d MiB file  %6d KiB\n' "$small_mib" "$small_rss"
printf '  %5d MiB file  %6d KiB\n' "$size_mib" "$large_rss"
printf '  large / small  %.3fx  (target: within 10%%)\n' "$(awk -v a="$large_rss" -v b="$small_rss" 'BEGIN { print a / b }')"
