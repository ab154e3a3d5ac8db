#!/usr/bin/env bash
# Rolling restarts under load: runs a formation of 3 web instances (the minimal hyper backend)
# behind shoal's router, drives it with wrk (half GETs, half POSTs with a body) and meanwhile
# runs `shoal restart web` several times. Prints what wrk saw: any non-2xx answer or socket
# error is a failed request. The target is zero. Traffic goes to 127.0.0.1 only; the run is
# bounded by BENCH_SECONDS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/shoal-target}"
SECONDS_TOTAL="${BENCH_SECONDS:-20}"
RESTARTS="${BENCH_RESTARTS:-3}"
PORT="${BENCH_PORT:-18300}"

if ! command -v wrk >/dev/null 2>&1; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
fi
if [ -z "${SHOAL_BIN:-}" ]; then
    cargo build --release -q -p shoal
    SHOAL_BIN="$CARGO_TARGET_DIR/release/shoal"
fi
if [ -z "${BACKEND_BIN:-}" ]; then
    cargo build --release -q -p shoal-router --example bench_backend
    BACKEND_BIN="$CARGO_TARGET_DIR/release/examples/bench_backend"
fi

work=$(mktemp -d)
trap 'kill -TERM "$shoal_pid" 2>/dev/null; wait "$shoal_pid" 2>/dev/null; rm -rf "$work"' EXIT
printf 'web: %s\n' "$BACKEND_BIN" > "$work/Procfile"
cat > "$work/mixed.lua" <<'LUA'
-- Every other request is a POST with a small body.
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/", {["Content-Type"] = "application/x-www-form-urlencoded"}, "amount=10&currency=EUR")
  end
  return wrk.format("GET", "/")
end
LUA

"$SHOAL_BIN" start -f "$work/Procfile" -m web=3 -p "$PORT" > "$work/shoal.log" 2>&1 &
shoal_pid=$!
for _ in $(seq 1 200); do
    [ "$(grep -c ' is ready on port ' "$work/shoal.log" || true)" -ge 3 ] && break
    sleep 0.05
done

wrk -t1 -c32 -d"${SECONDS_TOTAL}s" -s "$work/mixed.lua" "http://127.0.0.1:$PORT/" > "$work/wrk.txt" 2>&1 &
wrk_pid=$!
sleep 2
for i in $(seq 1 "$RESTARTS"); do
    start=$(date +%s.%N)
    "$SHOAL_BIN" restart -f "$work/Procfile" web
    end=$(date +%s.%N)
    printf 'restart %d took %.2f s\n' "$i" "$(echo "$end - $start" | bc)"
done
wait "$wrk_pid"

cat "$work/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
socket=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$work/wrk.txt")
drained=$(grep -c 'is draining' "$work/shoal.log" || true)
echo "ROLLING_RESTART requests=$requests failed_non_2xx=${non2xx:-0} socket_errors=${socket:-0} instances_replaced=$drained restarts=$RESTARTS"
