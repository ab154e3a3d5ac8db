#!/usr/bin/env bash
# Benchmark digest's worker pipeline against shell pipelines on the same file, side by side.
#
# nginx serves a file of random bytes from 127.0.0.1 (sendfile, access log off). Each round
# runs, in a rotating order:
#   digest   apps/digest/examples/pipeline_bench.rs: `digest_url` into a scratch file, exactly
#            as the worker does (download + SHA-256 + BLAKE3 + type scan + write), file removed
#   sha256   curl -s URL | sha256sum
#   openssl  curl -s URL | openssl dgst -sha256
# and checks that the three SHA-256 agree. After the rounds, the download alone
# (`curl -s -o /dev/null URL`, as many runs as rounds): the most any pipeline of this server
# and this machine could reach. Throughput is bytes / wall time of the whole
# command (process start included) in MB/s (10^6 bytes). The summary shows each median, the
# ratio of the medians digest/openssl (target >= 1.5x, and >= 1000 MB/s), the ratio in each
# round (digest ahead of openssl in every round?), the CPU budget (below), and where
# digest's time went (medians of pipeline_bench's per-stage counters: waiting for the
# download, waiting for a free block, each thread's busy time, SHA-256's wait). Then the pipeline's peak resident memory (VmHWM) for the small
# and the large file (target: within 10%, under 16 MiB).
#
# Then an upload: `shoal start` runs digest's web process (one instance, SQLite in the bench
# directory) behind shoal's router, and each round POSTs the large file as a multipart form
# to /api/uploads through the router (`curl -F`: upload + SHA-256 + BLAKE3 + type scan +
# scratch file + the report stored), interleaved with `curl | openssl dgst -sha256` again.
#
# The CPU budget: the CPU seconds per GiB of every process involved (each digest thread from
# the pipeline's own clocks, each process of the shell pipelines from GNU time, nginx's worker
# from /proc/PID/schedstat), and the floor they imply on this machine: the larger of all of
# them over the number of cores and the busiest single thread's. CPU seconds move little when
# the machine is shared, unlike wall time, so this part of the output holds on a busy machine
# too, and it tells how far each pipeline is from its limit.
#
# The limits of this machine come first: single-thread SHA-256 (the sha2 crate) and BLAKE3
# speed (`pipeline_bench --hash-speed`), and whether the CPU has SHA instructions.
#
# Installs nginx, curl, openssl and GNU time when missing (apt); builds the example with
# `cargo build --release -p digest-app --example pipeline_bench` unless DIGEST_BENCH_BIN is
# set, and for the upload `cargo build --release -p shoal -p digest-app` unless SHOAL_BIN and
# DIGEST_BIN are set.
# Environment (defaults in brackets):
#   BENCH_SIZE_MIB   the large file [1024]        BENCH_SMALL_MIB  the small file [64]
#   BENCH_ROUNDS     rounds [5]                   BENCH_PORT       nginx's port [18480]
#   BENCH_UPLOAD     1 to measure the upload, 0 to skip it [1]
#   BENCH_SHOAL_PORT shoal's port for the upload [18490]
#   BENCH_DIR        where files and scratch go, kept for the next run [a new temporary directory]
# The machine is shared (2 cores): compare figures from one run, and look at `uptime` first
# (printed in the first line).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
size_mib="${BENCH_SIZE_MIB:-1024}"
small_mib="${BENCH_SMALL_MIB:-64}"
rounds="${BENCH_ROUNDS:-5}"
port="${BENCH_PORT:-18480}"
upload="${BENCH_UPLOAD:-1}"
shoal_port="${BENCH_SHOAL_PORT:-18490}"

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
missing=()
for tool in nginx curl openssl sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        case "$tool" in sha256sum) missing+=(coreutils) ;; *) missing+=("$tool") ;; esac
    fi
done
# GNU time gives each process of a shell pipeline its own CPU seconds (bash's time cannot).
if [ ! -x /usr/bin/time ]; then missing+=(time); fi
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
if [ "$upload" = 1 ] && { [ -z "${SHOAL_BIN:-}" ] || [ -z "${DIGEST_BIN:-}" ]; }; then
    echo "digest.sh: building shoal and digest (release) for the upload" >&2
    cargo build --release -p shoal -p digest-app >&2
    SHOAL_BIN="${SHOAL_BIN:-$target/release/shoal}"
    DIGEST_BIN="${DIGEST_BIN:-$target/release/digest}"
fi

work="${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/digest-bench.XXXXXX")}"
mkdir -p "$work/www" "$work/scratch" "$work/nginx"
# nginx's worker runs as an unprivileged user when started as root: let it read the files.
chmod a+rx "$work" "$work/www"
nginx_pid=""
shoal_pid=""
cleanup() {
    if [ -n "$shoal_pid" ]; then kill "$shoal_pid" 2>/dev/null || true; wait "$shoal_pid" 2>/dev/null || true; fi
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work/scratch" "$work/app"
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
nginx_worker=$(pgrep -P "$nginx_pid" | head -n 1 || true)

now() { date +%s.%N; }

# CPU seconds of nginx's worker so far (schedstat: nanoseconds on a CPU, user and system).
nginx_ns() { awk '{ print $1 }' "/proc/$nginx_worker/schedstat" 2>/dev/null || echo 0; }
# CPU seconds of one process of a shell pipeline: GNU time's user + system, from its file.
cpu_file() { awk '{ printf "%.3f", $1 + $2 }' "$1"; } # FILE
timed() { /usr/bin/time -f '%U %S' -o "$1" "${@:2}"; } # FILE COMMAND...

# run NAME FILE -> prints "NAME SECONDS SHA256 [key=value ...]": the per-stage counters and
# the CPU seconds of each thread for digest (cpu_*), the CPU seconds of each process for the
# shell pipelines (cpu_curl, cpu_openssl, cpu_sha256sum), and for all `cpu_nginx`, the
# server's CPU seconds meanwhile
run() {
    local name=$1 file=$2 url="$base/$2" start end out sha extra="" nginx0 nginx1
    nginx0=$(nginx_ns)
    start=$(now)
    case "$name" in
        digest)
            out=$("$DIGEST_BENCH_BIN" "$url" "$work/scratch")
            sha=$(sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p' <<<"$out")
            # The per-stage counters, one field each (the digest itself is compared apart).
            extra=$(tr ' ' '\n' <<<"$out" | grep -E '^(max_rss_kib|chunks|blocks|stream_wait|block_wait|sha256_busy|sha256_wait|blake3_busy|write_busy|direct_bytes|writes|cpu_[a-z0-9]*)=' | tr '\n' ' ')
            ;;
        sha256)
            out=$(timed "$work/cpu.curl" curl -s "$url" | timed "$work/cpu.tool" sha256sum)
            sha=${out%% *}
            extra="cpu_curl=$(cpu_file "$work/cpu.curl") cpu_sha256sum=$(cpu_file "$work/cpu.tool")"
            ;;
        openssl)
            out=$(timed "$work/cpu.curl" curl -s "$url" | timed "$work/cpu.tool" openssl dgst -sha256)
            sha=${out##* }
            extra="cpu_curl=$(cpu_file "$work/cpu.curl") cpu_openssl=$(cpu_file "$work/cpu.tool")"
            ;;
    esac
    end=$(now)
    nginx1=$(nginx_ns)
    extra="$extra cpu_nginx=$(awk -v a="$nginx0" -v b="$nginx1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    echo "$name $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }') $sha $extra"
}

bytes=$((size_mib * 1048576))
echo "digest.sh: $rounds rounds of ${size_mib} MiB from $base (nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')), $(nproc) cores, load:$(uptime | sed 's/.*load average://')"
echo "sha_ni: $(grep -q -w sha_ni /proc/cpuinfo && echo yes || echo no); openssl: $(openssl version | cut -d' ' -f1-2); sha256sum: $(sha256sum --version | head -1)"
hash_speed=$("$DIGEST_BENCH_BIN" --hash-speed)
sha_gbs=$(sed -n 's/.*sha256_gb_per_s=\([0-9.]*\).*/\1/p' <<<"$hash_speed")
blake3_gbs=$(sed -n 's/.*blake3_gb_per_s=\([0-9.]*\).*/\1/p' <<<"$hash_speed")
echo "one thread, in memory, per second of its CPU time: SHA-256 (sha2) $sha_gbs GB/s, BLAKE3 $blake3_gbs GB/s"
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

median() { # reads numbers, prints their median
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
median_mbs() { # TOOL
    awk -v t="$1" -v b="$bytes" '$2 == t { print b / $3 / 1e6 }' "$results" | median
}
range_mbs() { # TOOL -> "min-max"
    awk -v t="$1" -v b="$bytes" '$2 == t { print b / $3 / 1e6 }' "$results" | sort -g \
        | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f-%.0f", lo, hi }'
}
digest_mbs=$(median_mbs digest)
sha_mbs=$(median_mbs sha256)
openssl_mbs=$(median_mbs openssl)
echo
echo "median of $rounds rounds, ${size_mib} MiB, MB/s (10^6 bytes/s, wall time of the whole command):"
printf '  digest pipeline (download + SHA-256 + BLAKE3 + scratch file)  %8.1f  (rounds %s)\n' "$digest_mbs" "$(range_mbs digest)"
printf '  curl | openssl dgst -sha256                                   %8.1f  (rounds %s)\n' "$openssl_mbs" "$(range_mbs openssl)"
printf '  curl | sha256sum                                              %8.1f  (rounds %s)\n' "$sha_mbs" "$(range_mbs sha256)"
printf '  digest / openssl pipeline    %.2fx  (target >= 1.5x, and >= 1000 MB/s)\n' "$(awk -v a="$digest_mbs" -v b="$openssl_mbs" 'BEGIN { print a / b }')"
printf '  digest / sha256sum pipeline  %.2fx\n' "$(awk -v a="$digest_mbs" -v b="$sha_mbs" 'BEGIN { print a / b }')"
# digest's time over openssl's in the same round: > 1 is a round where digest was behind.
per_round=$(awk '$2 == "digest" { d[$1] = $3 } $2 == "openssl" { o[$1] = $3 }
    END { for (r in d) if (r in o) printf "%s %.6f\n", r, o[r] / d[r] }' "$results" | sort -n)
printf '  digest / openssl in each round: %s\n' "$(awk '{ printf "%s%.2f", sep, $2; sep = ", " }' <<<"$per_round")"
if awk '$2 <= 1 { behind = 1 } END { exit !behind }' <<<"$per_round"; then
    echo "  digest was behind openssl in at least one round"
else
    echo "  digest was ahead of openssl in every round"
fi
alone=$(for round in $(seq 1 "$rounds"); do
    nginx0=$(nginx_ns)
    start=$(now)
    timed "$work/cpu.curl" curl -s -o /dev/null "$base/large.bin"
    end=$(now)
    nginx1=$(nginx_ns)
    awk -v b="$bytes" -v s="$start" -v e="$end" -v c="$(cpu_file "$work/cpu.curl")" -v n0="$nginx0" -v n1="$nginx1" \
        'BEGIN { printf "%f %s %f\n", b / (e - s) / 1e6, c, (n1 - n0) / 1e9 }'
done)
printf '  the download alone, curl -s -o /dev/null: %.1f MB/s (median of %d; %s)\n' \
    "$(cut -d' ' -f1 <<<"$alone" | median)" "$rounds" "$(cut -d' ' -f1 <<<"$alone" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f-%.0f", lo, hi }')"

# The CPU budget. CPU seconds hardly move when other work shares the machine, unlike wall
# time, so they tell how fast each pipeline could go on this machine with both cores to
# itself: its floor is the larger of (all its CPU seconds, the server's included) / cores and
# the CPU seconds of its busiest single thread (SHA-256's thread for digest, a whole process
# for the shell pipelines, whose processes have one thread each), both per GiB.
gib=$(awk -v b="$bytes" 'BEGIN { print b / 1073741824 }')
cores=$(nproc)
per_gib() { # TOOL FIELD -> median over the rounds, in seconds per GiB
    awk -v t="$1" '$2 == t' "$results" | grep -o " $2=[0-9.]*" | cut -d= -f2 | awk -v g="$gib" '{ print $1 / g }' | median
}
# budget TOOL "CRITICAL FIELDS" -> one line per round, "total floor wall" in seconds per GiB:
# total is the sum of the cpu_ fields but the process's own cpu_user and cpu_sys (its
# threads are listed apart), floor as above, wall the round's time
budget() {
    awk -v t="$1" -v crit=" $2 " -v g="$gib" -v cores="$cores" '$2 == t {
        total = 0; worst = 0
        for (i = 5; i <= NF; i++) {
            n = split($i, kv, "=")
            if (n != 2 || kv[1] !~ /^cpu_/ || kv[1] == "cpu_user" || kv[1] == "cpu_sys") continue
            total += kv[2]
            if (index(crit, " " kv[1] " ") && kv[2] > worst) worst = kv[2]
        }
        floor = total / cores > worst ? total / cores : worst
        printf "%f %f %f %f\n", total / g, floor / g, $3 / g, worst / g
    }' "$results"
}
column() { cut -d' ' -f"$1" | median; } # N: the median of column N
mbs_of() { awk -v s="$1" 'BEGIN { printf "%.0f", 1073741824 / s / 1e6 }'; } # SECONDS-PER-GIB
# floor_of TOOL "CRITICAL FIELDS" -> "total worst floor wall": the medians over the rounds of
# all the CPU seconds per GiB and of the busiest thread's, the floor they give, the median
# round's time per GiB
floor_of() {
    local rows total worst
    rows=$(budget "$1" "$2")
    total=$(column 1 <<<"$rows")
    worst=$(column 4 <<<"$rows")
    awk -v t="$total" -v w="$worst" -v c="$cores" -v wall="$(column 3 <<<"$rows")" \
        'BEGIN { f = t / c > w ? t / c : w; printf "%f %f %f %f\n", t, w, f, wall }'
}
floor_line() { # TOOL "CRITICAL FIELDS" LABEL
    local total worst floor wall
    read -r total worst floor wall <<<"$(floor_of "$1" "$2")"
    printf '      all %.3f; floor = max(all / %d cores = %.3f, %s %.3f) = %.3f s = %s MB/s; median round %.3f s, %.0f%% of the floor'"'"'s speed\n' \
        "$total" "$cores" "$(awk -v t="$total" -v c="$cores" 'BEGIN { print t / c }')" "$3" "$worst" \
        "$floor" "$(mbs_of "$floor")" "$wall" "$(awk -v f="$floor" -v w="$wall" 'BEGIN { print 100 * f / w }')"
}
echo
echo "CPU budget, seconds per GiB (user + system, medians over the rounds; nginx's worker apart):"
printf '  digest           fetch and fill %.3f, SHA-256 %.3f, BLAKE3 + type scan %.3f, writer %.3f, nginx %.3f\n' \
    "$(per_gib digest cpu_fetch)" "$(per_gib digest cpu_sha256)" "$(per_gib digest cpu_blake3)" \
    "$(per_gib digest cpu_write)" "$(per_gib digest cpu_nginx)"
floor_line digest "cpu_sha256" "SHA-256 thread"
printf '  curl | openssl   curl %.3f, openssl %.3f, nginx %.3f\n' \
    "$(per_gib openssl cpu_curl)" "$(per_gib openssl cpu_openssl)" "$(per_gib openssl cpu_nginx)"
floor_line openssl "cpu_curl cpu_openssl" "busiest process"
printf '  curl | sha256sum curl %.3f, sha256sum %.3f, nginx %.3f\n' \
    "$(per_gib sha256 cpu_curl)" "$(per_gib sha256 cpu_sha256sum)" "$(per_gib sha256 cpu_nginx)"
floor_line sha256 "cpu_curl cpu_sha256sum" "busiest process"
printf '  the download alone: curl %.3f, nginx %.3f\n' \
    "$(cut -d' ' -f2 <<<"$alone" | awk -v g="$gib" '{ print $1 / g }' | median)" \
    "$(cut -d' ' -f3 <<<"$alone" | awk -v g="$gib" '{ print $1 / g }' | median)"
# What no pipeline doing digest's job here can avoid: the download as curl alone makes it
# (nginx included), both hashes at their in-memory speed, and digest's write of the file.
least=$(awk -v c="$(cut -d' ' -f2 <<<"$alone" | awk -v g="$gib" '{ print $1 / g }' | median)" \
    -v n="$(cut -d' ' -f3 <<<"$alone" | awk -v g="$gib" '{ print $1 / g }' | median)" \
    -v s="$sha_gbs" -v b="$blake3_gbs" -v w="$(per_gib digest cpu_write)" -v cores="$cores" 'BEGIN {
        sha = 1.073741824 / s; total = c + n + sha + 1.073741824 / b + w
        floor = total / cores > sha ? total / cores : sha
        printf "%f %f %f %f %f\n", c + n, sha, 1.073741824 / b, total, floor }')
read -r least_download least_sha least_blake3 least_total least_floor <<<"$least"
printf '  the least digest'"'"'s job takes here: the download alone %.3f + SHA-256 %.3f + BLAKE3 %.3f (in memory) + the write %.3f = %.3f;\n' \
    "$least_download" "$least_sha" "$least_blake3" "$(per_gib digest cpu_write)" "$least_total"
printf '      floor = max(%.3f / %d cores, SHA-256 %.3f) = %.3f s = %s MB/s\n' \
    "$least_total" "$cores" "$least_sha" "$least_floor" "$(mbs_of "$least_floor")"
digest_floor=$(floor_of digest cpu_sha256 | cut -d' ' -f3)
target_s=$(awk -v m="$openssl_mbs" 'BEGIN { print 1073741824 / (1.5 * m * 1e6) }')
printf '  1.5x the openssl pipeline'"'"'s median is %s MB/s, %.3f s per GiB; digest'"'"'s floor is %.3f s: ' \
    "$(mbs_of "$target_s")" "$target_s" "$digest_floor"
awk -v f="$digest_floor" -v t="$target_s" 'BEGIN {
    if (f >= t) printf "beyond this machine (at its floor digest would be %.2fx openssl)\n", 1.5 * t / f
    else printf "within reach only at %.0f%% of the floor'"'"'s speed\n", 100 * f / t }'
echo
echo "where digest's time went (medians over the rounds, seconds; a thread is idle for the rest):"
stage() { # FIELD
    grep -o " $1=[0-9.]*" "$results" | cut -d= -f2 | median
}
printf '  pipeline %.3f s: waiting for the download %.3f, for a free block %.3f;\n' \
    "$(awk -v b="$bytes" -v m="$digest_mbs" 'BEGIN { print b / m / 1e6 }')" "$(stage stream_wait)" "$(stage block_wait)"
printf '  busy: SHA-256 %.3f, BLAKE3 + type scan %.3f, writer %.3f (%s writes; direct I/O: %s of %s bytes);\n' \
    "$(stage sha256_busy)" "$(stage blake3_busy)" "$(stage write_busy)" "$(stage writes)" "$(stage direct_bytes)" "$bytes"
printf '  SHA-256, the slowest stage, waited %.3f for a block (the time it had nothing to do);\n' "$(stage sha256_wait)"
printf '  %s reads from the download, %s blocks\n' "$(stage chunks)" "$(stage blocks)"
echo
echo "peak resident memory of the digest pipeline (VmHWM of pipeline_bench, one process per file):"
small_rss=$("$DIGEST_BENCH_BIN" "$base/small.bin" "$work/scratch" | sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p')
large_rss=$("$DIGEST_BENCH_BIN" "$base/large.bin" "$work/scratch" | sed -n 's/.*max_rss_kib=\([0-9]*\).*/\1/p')
printf '  %5d MiB file  %6d KiB\n' "$small_mib" "$small_rss"
printf '  %5d MiB file  %6d KiB\n' "$size_mib" "$large_rss"
printf '  large / small  %.3fx  (target: within 10%%, both under 16 MiB)\n' "$(awk -v a="$large_rss" -v b="$small_rss" 'BEGIN { print a / b }')"

if [ "$upload" != 1 ]; then exit 0; fi

# The upload: digest's web process behind shoal's router, on SQLite in the bench directory.
app="$work/app"
mkdir -p "$app/data"
printf 'web: exec "%s" web\n' "$DIGEST_BIN" >"$app/Procfile"
echo
echo "upload through shoal's router (shoal start, web=1) into digest's web process:"
(
    cd "$app"
    export DATABASE_URL="sqlite://$app/data/digest.db" DIGEST_MAX_BYTES=$((2 * bytes))
    exec "$SHOAL_BIN" start -f "$app/Procfile" -p "$shoal_port" --health-path /healthz \
        --no-color >"$app/shoal.log" 2>&1
) &
shoal_pid=$!
app_url="http://127.0.0.1:$shoal_port"
for attempt in $(seq 1 1200); do
    if curl -sf -o /dev/null "$app_url/healthz"; then break; fi
    if [ "$attempt" -eq 1200 ] || ! kill -0 "$shoal_pid" 2>/dev/null; then
        echo "digest.sh: shoal did not get digest's web process ready on port $shoal_port:" >&2
        tail -n 20 "$app/shoal.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
api=(-s -b "$app/cookies" -c "$app/cookies" -H "X-Requested-With: bench")
status=$(curl "${api[@]}" -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"bench-password"}' "$app_url/api/signup")
if [ "$status" != 201 ]; then
    echo "digest.sh: signing up on digest answered $status" >&2
    exit 1
fi
large_sha=$(awk 'NR == 1 { print $4 }' "$results")
uploads="$work/uploads"
: >"$uploads"
for round in $(seq 1 "$rounds"); do
    for i in 0 1; do
        if [ $(((i + round) % 2)) -eq 0 ]; then
            start=$(now)
            out=$(curl "${api[@]}" -F "file=@$work/www/large.bin" "$app_url/api/uploads")
            end=$(now)
            sha=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' <<<"$out")
            if [ "$sha" != "$large_sha" ]; then
                echo "digest.sh: the upload's report is not the file's: ${out:0:300}" >&2
                exit 1
            fi
            line="upload $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }') $sha"
        else
            line=$(run openssl large.bin)
        fi
        echo "$round $line" >>"$uploads"
        read -r name seconds _ <<<"$line"
        printf '  round %d  %-8s %8.1f MB/s\n' "$round" "$name" \
            "$(awk -v b="$bytes" -v s="$seconds" 'BEGIN { print b / s / 1e6 }')"
    done
done
results="$uploads" # for median_mbs and range_mbs
upload_mbs=$(median_mbs upload)
openssl_mbs=$(median_mbs openssl)
echo
echo "median of $rounds rounds, ${size_mib} MiB, MB/s:"
printf '  upload: curl -F through the router to digest web (+ report stored)  %8.1f  (rounds %s)\n' "$upload_mbs" "$(range_mbs upload)"
printf '  curl | openssl dgst -sha256                                          %8.1f  (rounds %s)\n' "$openssl_mbs" "$(range_mbs openssl)"
printf '  upload / openssl pipeline  %.2fx\n' "$(awk -v a="$upload_mbs" -v b="$openssl_mbs" 'BEGIN { print a / b }')"
