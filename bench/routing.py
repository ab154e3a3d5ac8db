#!/usr/bin/env python3
"""Open-loop benchmark of concurrency-aware routing: shoal against nginx and haproxy
in front of single-threaded instances with a heavy-tailed service time (issue 14).

Setup (one run of this script)
  app         A single-threaded Python web app (http.server.HTTPServer, not the
              threading variant), written to the work dir as app.py: one request
              at a time and one request per connection (HTTP/1.0, Connection:
              close), as a gunicorn sync worker. `GET /?ms=N` sleeps N ms, then
              answers `ok`. Its listen backlog is 2048, gunicorn's default, so a
              request sent to a busy instance waits in the kernel's accept queue
              behind whatever that instance is running (the hidden queue).
  service     The load generator draws each request's service time and sends it
              as `ms`: 95% 5 ms, 4.5% 50 ms, 0.5% 500 ms (mean 9.5 ms), from an RNG
              seeded per level and round, so every configuration in a round gets
              the same sequence of arrivals and service times.
  formation   4 instances per configuration. shoal starts its own from a Procfile
              (`web: python3 app.py`, `-m web=4`); nginx and haproxy share 4
              instances the harness starts on fixed ports. All configurations run
              at once for the whole benchmark, each idle while another is measured.
                shoal-p2c    `shoal start -m web=4`: default balance (p2c), no limit
                shoal-mif1   `shoal start -m web=4 --max-in-flight 1`: one FIFO queue in
                             the router (defaults: --queue-timeout 10, --max-queue 1024)
                nginx        upstream `least_conn` over the 4 ports, worker_processes 1
                haproxy      `balance leastconn`, `maxconn 1` per server (requests wait in
                             haproxy's queue), `timeout queue 10s` like shoal's queue
                             timeout; no `maxqueue` (unbounded, haproxy's default)
              nginx and haproxy add the headers shoal's router always adds
              (X-Forwarded-For/-Proto/-Host/-Port, X-Request-Id, X-Request-Start;
              BENCH_PEER_HEADERS=0 turns that off): Python parses headers slowly, and
              without them shoal's instances would do measurably more work per request.
              `shoal --max-in-flight auto` (issue 14's stretch goal) does not exist,
              so it is not measured.
  capacity    4 / mean service time. The mean is the drawn 9.5 ms plus the
              per-request overhead of an instance (accepting, parsing, answering,
              sleep overshoot), measured before round 1 by timing sequential
              `ms=5` requests sent straight to one instance (BENCH_CAPACITY
              overrides the result).
  load        Open loop at a constant arrival rate: request i is due at
              start + i / rate, whether or not earlier ones were answered, each
              on its own connection (`Connection: close`), from asyncio in this
              process. Latency runs from the request's INTENDED send time to its
              complete response, so a generator that falls behind (or a proxy that
              is slow to accept) cannot hide queueing (no coordinated omission);
              how late sends were is reported as `lag`. Levels 50%, 80%, 95% for
              BENCH_SECONDS each, and 130% for BENCH_OVERLOAD_SECONDS.
  recovery    After the 130% burst, probes (`ms=0`, one every 50 ms, open loop)
              measure how long the formation takes to recover: the recovery time
              is when the first probe was due from which on every probe got a 200
              within 50 ms (BENCH_RECOVERY_MS), counted from the end of the burst.
              Probing stops after 1 s of good probes once every burst request is
              answered, or after BENCH_PROBE_SECONDS.
  pinning     This harness (and so the load generator) on one core; the proxies
              and instances on the other (taskset; BENCH_PIN=0 turns it off). All of
              them run at nice -10 (BENCH_NICE), so that other work on the machine
              delays their wake-ups less.

Reported per configuration and level (medians over the interleaved rounds, except
errors, which are summed): requests/s offered and served (200), latency p50, p99
and p99.9 of served requests, errors (connection refused/reset, closed before a
full response, client timeout after BENCH_CLIENT_TIMEOUT s), 503s (with the p99
time to the 503, from the intended and from the actual send), other statuses, the
generator's send lag p99, and the proxy's own CPU time per request (utime+stime
from /proc: shoal's process without its instances, nginx's master and worker,
haproxy's process; it includes the kernel's loopback TCP work done on the proxy's
behalf, two connections per request). At 130% also the recovery time. Ratios at each level: shoal-mif1 p99 / haproxy p99 and / nginx p99;
issue 14's targets at 80% load: <= 1.0x haproxy, <= 0.5x nginx, and 0 errors
everywhere.

Interleaving: every round runs each level for every configuration before the next
level, in an order rotated from run to run.

Running
  bench/routing.sh                installs nginx/haproxy, builds shoal, runs this
  python3 bench/routing.py --shoal PATH

Environment (defaults in brackets)
  SHOAL_BIN        shoal binary [$CARGO_TARGET_DIR or target, /release/shoal]
  BENCH_TARGETS    comma-separated subset of shoal-p2c,shoal-mif1,nginx,haproxy [all]
  BENCH_ROUNDS     rounds [3]
  BENCH_SECONDS    seconds per run at 50%, 80% and 95% [12]
  BENCH_OVERLOAD_SECONDS  seconds of the 130% burst [20; 4/3 of BENCH_SECONDS when set]
  BENCH_LEVELS     load levels in percent of capacity [50,80,95,130]
  BENCH_CAPACITY   requests/s the formation serves (skips the measurement) [measured]
  BENCH_WARMUP     seconds of unrecorded load (50%) per configuration first [2]
  BENCH_GAP        seconds of quiet between runs [1]
  BENCH_CLIENT_TIMEOUT  seconds before the generator gives up on a request [30]
  BENCH_PROBE_SECONDS   longest recovery probing after the burst [15]
  BENCH_RECOVERY_MS     a probe slower than this has not recovered [50]
  BENCH_MAX_REQUESTS    most requests in one run [60000]
  BENCH_PIN        1 = pin the generator and the servers to different cores [1]
  BENCH_MIF1_ARGS  more `shoal start` flags for shoal-mif1, e.g. "--max-queue 256" []
  BENCH_PEER_HEADERS 1 = nginx and haproxy add the headers shoal always adds, 0 = not [1]
  BENCH_NICE       scheduling priority of the harness and all it starts (needs root;
                   0 = unchanged) [-10]
  BENCH_DEADLINE   seconds for any startup or wait [60]
  BENCH_KEEP       1 = keep the temp dir with configs and logs [0]
  BENCH_PORT       base port P: shoal-p2c P (instances P+100..), shoal-mif1 P+10
                   (instances P+110..), nginx P+1, haproxy P+2, the peers' instances
                   P+200.. [19000]

With the defaults a run takes about 15 minutes. Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import math
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field

TARGETS = ("shoal-p2c", "shoal-mif1", "nginx", "haproxy")
INSTANCES = 4
# (probability, milliseconds): the service-time mix of issue 14.
MIX = ((0.95, 5), (0.045, 50), (0.005, 500))
MEAN_MS = sum(p * ms for p, ms in MIX)
READY_LINE = re.compile(r"\b(web\.\d+) is ready on port (\d+)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROBE_PERIOD = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")

APP = r'''"""Single-threaded benchmark instance: one request at a time, one per connection
(like a gunicorn sync worker). `GET /?ms=N` sleeps N ms (at most 10 s), then answers."""
import os
import socketserver
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

BODY = b"ok\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection

    def do_GET(self):
        try:
            ms = float(parse_qs(urlsplit(self.path).query).get("ms", ["0"])[0])
        except ValueError:
            ms = 0.0
        if ms > 0:
            time.sleep(min(ms, 10000.0) / 1000)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


class Server(HTTPServer):
    request_queue_size = 2048  # gunicorn's default backlog
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


class BenchFailure(Exception):
    """A run or a startup missed a deadline or went wrong."""


# --------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    rounds: int
    seconds: float
    overload_seconds: float
    levels: list[int]
    capacity: float | None
    warmup: float
    gap: float
    client_timeout: float
    probe_seconds: float
    recovery_ms: float
    max_requests: int
    deadline: float
    port: int
    workdir: str
    shoal: str
    cores: tuple[int, int] | None  # (generator, servers); None = no pinning
    nice: int
    peer_headers: bool
    mif1_args: list[str]

    def pinned(self, argv: list[str]) -> list[str]:
        """`argv` under taskset on the servers' core."""
        return argv if self.cores is None else ["taskset", "-c", str(self.cores[1]), *argv]

    def level_seconds(self, level: int) -> float:
        return self.overload_seconds if level > 100 else self.seconds


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    target = env("CARGO_TARGET_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target")
    seconds = float(env("BENCH_SECONDS") or 12)
    overload = env("BENCH_OVERLOAD_SECONDS") or (seconds * 4 / 3 if env("BENCH_SECONDS") else 20)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shoal", default=env("SHOAL_BIN") or os.path.join(target, "release", "shoal"))
    p.add_argument("--targets", default=env("BENCH_TARGETS") or ",".join(TARGETS))
    p.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS") or 3))
    p.add_argument("--seconds", type=float, default=seconds)
    p.add_argument("--overload-seconds", type=float, default=float(overload))
    p.add_argument("--levels", default=env("BENCH_LEVELS") or "50,80,95,130")
    p.add_argument("--capacity", type=float, default=float(env("BENCH_CAPACITY") or 0) or None)
    p.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP") or 2))
    p.add_argument("--gap", type=float, default=float(env("BENCH_GAP") or 1))
    p.add_argument("--client-timeout", type=float,
                   default=float(env("BENCH_CLIENT_TIMEOUT") or 30))
    p.add_argument("--probe-seconds", type=float,
                   default=float(env("BENCH_PROBE_SECONDS") or 15))
    p.add_argument("--recovery-ms", type=float, default=float(env("BENCH_RECOVERY_MS") or 50))
    p.add_argument("--max-requests", type=int, default=int(env("BENCH_MAX_REQUESTS") or 60000))
    p.add_argument("--pin", type=int, choices=(0, 1), default=int(env("BENCH_PIN") or 1))
    p.add_argument("--peer-headers", type=int, choices=(0, 1),
                   default=int(env("BENCH_PEER_HEADERS") or 1))
    p.add_argument("--mif1-args", default=env("BENCH_MIF1_ARGS") or "")
    p.add_argument("--nice", type=int, default=int(env("BENCH_NICE") or -10))
    p.add_argument("--deadline", type=float, default=float(env("BENCH_DEADLINE") or 60))
    p.add_argument("--port", type=int, default=int(env("BENCH_PORT") or 19000))
    return p.parse_args()


# --------------------------------------------------------------------------
# Processes


def read_ppid_state(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()  # comm may contain spaces or parentheses
    return int(rest[1]), rest[0]


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime + stime of each process (all its threads), in clock ticks."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        out[pid] = int(rest[11]) + int(rest[12])
    return out


def live_descendants(root: int) -> list[int]:
    children: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := read_ppid_state(int(name))) is not None:
            children[st[0]].append((int(name), st[1]))
    found, todo = [], [root]
    while todo:
        for pid, state in children.get(todo.pop(), []):
            if state not in ("Z", "X"):
                found.append(pid)
            todo.append(pid)
    return found


def become_subreaper() -> None:
    """Orphaned descendants (instances whose supervisor died) get reparented to
    this harness instead of init, so the cleanup still finds them."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


class Processes:
    """Everything the harness started, each in its own session; `close` stops
    them all and SIGKILLs whatever is left below the harness."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], output: str, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        with open(output, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        limit = time.monotonic() + 15
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(50):
            alive = live_descendants(os.getpid())
            if not alive:
                break
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def output_tail(path: str, lines: int = 8) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4000))
            tail = f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    return "\n".join("      " + ANSI.sub("", line) for line in tail) or "      (none)"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_http(url: str, proc: subprocess.Popen, deadline: float, what: str, log: str) -> None:
    limit = time.monotonic() + deadline
    while not http_ok(url):
        if proc.poll() is not None:
            raise BenchFailure(f"{what} exited with {proc.returncode}; last output:\n"
                               f"{output_tail(log)}")
        if time.monotonic() > limit:
            raise BenchFailure(f"{what}: {url} did not answer 200 within {deadline:.0f}s;"
                               f" last output:\n{output_tail(log)}")
        time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stdout + out.stderr).strip().splitlines()
    if not lines:
        return "unknown"
    line = re.sub(r"^nginx version: ", "", lines[0].strip()).replace(" version ", " ")
    return re.sub(r"\s+(Copyright.*|-\s+https?://.*|\(.*)$", "", line)


# --------------------------------------------------------------------------
# The configurations


@dataclass
class Target:
    name: str
    port: int
    proc: subprocess.Popen
    setup: str
    children_count: bool = False  # nginx: the master's workers count too

    def cpu_pids(self) -> list[int]:
        """The proxy's own processes: shoal's process (not its instances), nginx's
        master and worker, haproxy's one process."""
        return [self.proc.pid] + (live_descendants(self.proc.pid) if self.children_count else [])

    def alive(self) -> bool:
        return self.proc.poll() is None


def shoal_problem(binary: str, flag: str) -> str | None:
    """None when `shoal start --help` mentions `flag`, else why shoal is skipped."""
    if not os.access(binary, os.X_OK):
        return f"{binary} not found or not executable"
    try:
        out = subprocess.run([binary, "start", "--help"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`shoal start --help` failed: {exc}"
    if out.returncode != 0 or flag not in out.stdout + out.stderr:
        return f"`shoal start --help` does not mention {flag}"
    return None


def start_shoal(cfg: Config, procs: Processes, name: str, port: int,
                extra: list[str]) -> Target:
    d = os.path.join(cfg.workdir, name)
    os.makedirs(d)
    shutil.copy(os.path.join(cfg.workdir, "app.py"), os.path.join(d, "app.py"))
    with open(os.path.join(d, "Procfile"), "w") as f:
        f.write("web: python3 app.py\n")
    log = os.path.join(d, "stdout.log")
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "WEB_CONCURRENCY")}
    env["NO_COLOR"] = "1"
    argv = cfg.pinned([cfg.shoal, "start", "-f", os.path.join(d, "Procfile"), "-d", d,
                       "-m", f"web={INSTANCES}", "-p", str(port), *extra])
    proc = procs.spawn(argv, log, env=env, cwd=d)
    limit = time.monotonic() + cfg.deadline
    ready: dict[str, int] = {}
    while len(ready) < INSTANCES:
        with open(log, "rb") as f:
            text = ANSI.sub("", f.read().decode(errors="replace"))
        ready = {m.group(1): int(m.group(2)) for m in READY_LINE.finditer(text)}
        if proc.poll() is not None:
            raise BenchFailure(f"shoal exited with {proc.returncode}; last output:\n"
                               f"{output_tail(log)}")
        if time.monotonic() > limit:
            raise BenchFailure(f"shoal: {len(ready)}/{INSTANCES} instances ready within"
                               f" {cfg.deadline:.0f}s; last output:\n{output_tail(log)}")
        time.sleep(0.05)
    wait_http(f"http://127.0.0.1:{port}/?ms=0", proc, cfg.deadline, "shoal", log)
    setup = " ".join(["shoal start", "-m", f"web={INSTANCES}", *extra])
    return Target(name, port, proc, setup)


def start_instances(cfg: Config, procs: Processes) -> list[int]:
    """The peers' 4 instances, on the servers' core, as shoal would start them."""
    ports = [cfg.port + 200 + i for i in range(INSTANCES)]
    d = os.path.join(cfg.workdir, "instances")
    os.makedirs(d)
    for port in ports:
        log = os.path.join(d, f"{port}.log")
        env = dict(os.environ, PORT=str(port))
        proc = procs.spawn(cfg.pinned(["python3", os.path.join(cfg.workdir, "app.py")]), log,
                           env=env, cwd=d)
        wait_http(f"http://127.0.0.1:{port}/?ms=0", proc, cfg.deadline, f"app :{port}", log)
    return ports


def start_nginx(cfg: Config, procs: Processes, backends: list[int]) -> Target:
    d = os.path.join(cfg.workdir, "nginx")
    os.makedirs(d)
    os.chmod(d, 0o755)  # a worker that dropped root privileges must reach its temp dirs
    port = cfg.port + 1
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in backends)
    temp_paths = "".join(f"    {kind}_temp_path {d}/{kind}_temp;\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    nginx_headers = "".join(f"            {line};\n" for line in NGINX_HEADERS) \
        if cfg.peer_headers else ""
    conf = os.path.join(d, "nginx.conf")
    # worker_connections: at 130% thousands of requests wait in the instances' backlogs,
    # each holding two of nginx's connections.
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 16384;
}}
http {{
    access_log {d}/access.log;
{temp_paths}    upstream instances {{
        least_conn;
{servers}    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://instances;
            proxy_read_timeout 60s;
{nginx_headers}        }}
    }}
}}
""")
    log = os.path.join(d, "stdout.log")
    proc = procs.spawn(cfg.pinned(["nginx", "-c", conf, "-p", d + "/"]), log)
    wait_http(f"http://127.0.0.1:{port}/?ms=0", proc, cfg.deadline, "nginx",
              os.path.join(d, "error.log"))
    return Target("nginx", port, proc,
                  "upstream least_conn, worker_processes 1, access_log -> file"
                  + PEER_HEADERS_NOTE[cfg.peer_headers], children_count=True)


# What shoal's router always adds to a request (and X-Request-Id to the response), asked of
# the peers too (BENCH_PEER_HEADERS=1): Python's header parsing is slow enough that five more
# headers per request would otherwise make shoal's instances measurably slower than theirs.
NGINX_HEADERS = (
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
    "proxy_set_header X-Forwarded-Proto $scheme",
    "proxy_set_header X-Forwarded-Host $http_host",
    "proxy_set_header X-Forwarded-Port $server_port",
    "proxy_set_header X-Request-Id $request_id",
    "proxy_set_header X-Request-Start t=${msec}",
    "add_header X-Request-Id $request_id",
)
HAPROXY_HEADERS = (
    "option forwardfor",
    "http-request set-header X-Forwarded-Proto http",
    "http-request set-header X-Forwarded-Host %[req.hdr(host)]",
    "http-request set-header X-Forwarded-Port %[dst_port]",
    "http-request set-header X-Request-Start t=%[date(0,us)]",
    "unique-id-format %[uuid]",
    "unique-id-header X-Request-Id",
    "http-response set-header X-Request-Id %[unique-id]",
)
PEER_HEADERS_NOTE = {True: ", shoal's forwarding headers, X-Request-Id and X-Request-Start",
                     False: ""}


def start_haproxy(cfg: Config, procs: Processes, backends: list[int]) -> Target:
    d = os.path.join(cfg.workdir, "haproxy")
    os.makedirs(d)
    port = cfg.port + 2
    servers = "".join(f"    server web{i} 127.0.0.1:{p} maxconn 1\n"
                      for i, p in enumerate(backends, 1))
    haproxy_headers = "".join(f"    {line}\n" for line in HAPROXY_HEADERS) \
        if cfg.peer_headers else ""
    conf = os.path.join(d, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 8000
    log stdout format raw local0

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout queue 10s

frontend bench
    bind 127.0.0.1:{port}
    maxconn 8000
{haproxy_headers}    default_backend instances

backend instances
    balance leastconn
{servers}""")
    log = os.path.join(d, "stdout.log")
    proc = procs.spawn(cfg.pinned(["haproxy", "-f", conf, "-db"]), log)
    wait_http(f"http://127.0.0.1:{port}/?ms=0", proc, cfg.deadline, "haproxy", log)
    return Target("haproxy", port, proc,
                  "balance leastconn, maxconn 1 per server, timeout queue 10s, nbthread 1,"
                  " httplog -> file" + PEER_HEADERS_NOTE[cfg.peer_headers])


# --------------------------------------------------------------------------
# The open-loop load generator


@dataclass
class Outcome:
    due: float          # intended send time, seconds after the run's start
    latency: float      # from `due` to the complete response (or the failure)
    lag: float          # how late the connection was started
    status: int         # 0 when there was no complete response
    error: str          # "" or connect / reset / eof / timeout / garbled
    code: str = ""      # X-Shoal-Error


class Exchange(asyncio.Protocol):
    """One request on its own connection; `done` gets (status, code) once the
    response is complete, or an exception. The connection is closed by the
    server (Connection: close) so that TIME_WAIT stays on the server side and
    the generator does not run out of ephemeral ports."""

    def __init__(self, request: bytes, done: asyncio.Future, closed: asyncio.Future) -> None:
        self.request = request
        self.done = done
        self.closed = closed
        self.buf = bytearray()
        self.head: tuple[int, str, int | None, int] | None = None  # status, code, length, start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buf += data
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                length, code = None, ""
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "x-shoal-error":
                        code = value.strip()
            except (ValueError, IndexError):
                self.done.set_exception(ValueError("garbled"))
                return
            self.head = (status, code, length, end + 4)
        status, code, length, start = self.head
        if length is not None and len(self.buf) - start >= length:
            self.done.set_result((status, code))

    def eof_received(self) -> bool:
        self._finish(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def _finish(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self.head is not None and self.head[2] is None:
            self.done.set_result(self.head[:2])  # no Content-Length: the body ends at EOF
        else:
            self.done.set_exception(exc or EOFError())


async def exchange(port: int, request: bytes, due: float, timeout: float) -> Outcome:
    loop = asyncio.get_running_loop()
    start = loop.time()
    done, closed = loop.create_future(), loop.create_future()
    transport = None
    status, code, error = 0, "", ""
    try:
        async with asyncio.timeout(timeout):
            try:
                transport, _ = await loop.create_connection(
                    lambda: Exchange(request, done, closed), "127.0.0.1", port)
            except OSError:
                error = "connect"
            else:
                status, code = await done
    except TimeoutError:
        error = "timeout"
    except EOFError:
        error = "eof"
    except ValueError:
        error = "garbled"
    except OSError:
        error = "reset"
    end = loop.time()
    if transport is not None:
        if error:
            transport.abort()
        else:
            # The server closes after the response; wait briefly for it, then close anyway.
            try:
                async with asyncio.timeout(2):
                    await closed
            except TimeoutError:
                transport.close()
    return Outcome(due=0.0, latency=end - due, lag=start - due, status=status, error=error,
                   code=code)


def schedule(level: int, rnd: int, rate: float, seconds: float,
             limit: int) -> list[tuple[float, int]]:
    """(due offset in seconds, service ms) for every request of a run: a constant
    arrival rate and service times drawn from MIX, the same for every configuration."""
    rng = random.Random(f"routing-{level}-{rnd}")
    count = min(limit, int(rate * seconds))
    out = []
    for i in range(count):
        u, ms = rng.random(), MIX[-1][1]
        for p, value in MIX:
            if u < p:
                ms = value
                break
            u -= p
        out.append((i / rate, ms))
    return out


@dataclass
class RunData:
    requests: list[Outcome]
    probes: list[Outcome] = field(default_factory=list)
    burst_end: float = 0.0


async def generate(port: int, plan: list[tuple[float, int]], timeout: float,
                   probe_seconds: float = 0.0, recovery_s: float = 0.05) -> RunData:
    """Sends `plan` open loop to 127.0.0.1:`port`; with `probe_seconds`, then probes."""
    loop = asyncio.get_running_loop()
    host = f"127.0.0.1:{port}".encode()
    t0 = loop.time() + 0.05
    tasks: list[tuple[float, asyncio.Task]] = []
    pending = 0

    def finished(_: asyncio.Task) -> None:
        nonlocal pending
        pending -= 1

    for i, (offset, ms) in enumerate(plan):
        due = t0 + offset
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        req = b"GET /?ms=%d&i=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (ms, i, host)
        task = loop.create_task(exchange(port, req, due, timeout))
        pending += 1
        task.add_done_callback(finished)
        tasks.append((offset, task))
    burst_end = (plan[-1][0] + plan[1][0] if len(plan) > 1 else 0.0)
    probes: list[tuple[float, asyncio.Task]] = []
    k = 0
    while probe_seconds > 0 and k * PROBE_PERIOD < probe_seconds:
        offset = burst_end + k * PROBE_PERIOD
        due = t0 + offset
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # Checked after the wait, so that the latest probe had its period to answer.
        recent = [t for _, t in probes[-20:]]
        if (pending == 0 and len(recent) == 20 and all(t.done() for t in recent)
                and all(good(t.result(), recovery_s) for t in recent)):
            break
        req = b"GET /?ms=0&probe=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (k, host)
        probes.append((offset, loop.create_task(exchange(port, req, due, timeout))))
        k += 1
    out = RunData([], burst_end=burst_end)
    for (offset, task) in tasks:
        r = await task
        r.due = offset
        out.requests.append(r)
    for (offset, task) in probes:
        r = await task
        r.due = offset
        out.probes.append(r)
    return out


def good(r: Outcome, recovery_s: float) -> bool:
    return r.status == 200 and not r.error and r.latency <= recovery_s


def run_load(port: int, plan: list[tuple[float, int]], timeout: float,
             probe_seconds: float = 0.0, recovery_s: float = 0.05) -> RunData:
    # A collection pause would show up as latency of every request in flight.
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(generate(port, plan, timeout, probe_seconds, recovery_s))
    finally:
        gc.enable()


def measure_capacity(cfg: Config, port: int) -> tuple[float, float]:
    """(capacity in requests/s, per-request overhead in ms), from sequential
    `ms=5` requests sent straight to one instance."""
    async def sequential(n: int) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        out = []
        for i in range(n):
            req = b"GET /?ms=5&cal=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i
            out.append(await exchange(port, req, loop.time(), cfg.client_timeout))
        return out

    asyncio.run(sequential(20))  # warm-up
    runs = asyncio.run(sequential(300))
    if bad := [r for r in runs if r.status != 200]:
        raise BenchFailure(f"capacity measurement: {len(bad)} of {len(runs)} requests failed")
    overhead_ms = max(0.0, statistics.median(r.latency for r in runs) * 1000 - 5)
    return INSTANCES / ((MEAN_MS + overhead_ms) / 1000), overhead_ms


# --------------------------------------------------------------------------
# Statistics


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


@dataclass
class RunStats:
    offered_rps: float
    served_rps: float
    sent: int
    ok: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    errors: int
    error_kinds: dict[str, int]
    n503: int
    codes_503: dict[str, int]
    p99_503_ms: float | None
    p99_503_sent_ms: float | None  # from the actual connect, without the generator's lag
    other: int
    lag_p99_ms: float | None
    recovery_s: float | None = None   # None: not recovered within the probing window
    probes: int = 0
    cpu_us_per_request: float | None = None  # the proxy's own CPU time


def run_stats(data: RunData, rate: float, seconds: float, probing: bool,
              recovery_ms: float) -> RunStats:
    reqs = data.requests
    ok = [r.latency * 1000 for r in reqs if r.status == 200 and not r.error]
    shed = [r for r in reqs if r.status == 503 and not r.error]
    kinds = collections.Counter(r.error for r in reqs if r.error)
    codes = collections.Counter(r.code or "-" for r in shed)
    st = RunStats(
        offered_rps=rate, served_rps=len(ok) / seconds, sent=len(reqs), ok=len(ok),
        p50_ms=pct(ok, 50), p99_ms=pct(ok, 99), p999_ms=pct(ok, 99.9),
        max_ms=max(ok) if ok else None,
        errors=sum(kinds.values()), error_kinds=dict(kinds),
        n503=len(shed), codes_503=dict(codes),
        p99_503_ms=pct([r.latency * 1000 for r in shed], 99),
        p99_503_sent_ms=pct([(r.latency - r.lag) * 1000 for r in shed], 99),
        other=sum(1 for r in reqs if not r.error and r.status not in (200, 503)),
        lag_p99_ms=pct([r.lag * 1000 for r in reqs + data.probes], 99))
    if probing:
        st.probes = len(data.probes)
        # the due time of the first probe from which on every probe was good
        first_good = None
        for r in data.probes:
            if good(r, recovery_ms / 1000):
                if first_good is None:
                    first_good = r.due
            else:
                first_good = None
            if r.error:
                st.errors += 1
                st.error_kinds[f"probe {r.error}"] = st.error_kinds.get(f"probe {r.error}", 0) + 1
        if first_good is not None:
            st.recovery_s = max(0.0, first_good - data.burst_end)
    return st


# --------------------------------------------------------------------------
# Rounds


@dataclass
class Results:
    runs: dict[tuple[str, int], list[RunStats]] = field(
        default_factory=lambda: collections.defaultdict(list))


def run_rounds(cfg: Config, targets: list[Target], capacity: float, res: Results) -> None:
    for rnd in range(cfg.rounds):
        for j, level in enumerate(cfg.levels):
            # The order changes from level to level and from round to round (with 4 levels
            # and 4 configurations, a counter over both would repeat every round).
            k = (rnd + j) % len(targets)
            for t in targets[k:] + targets[:k]:
                tag = f"[round {rnd + 1}/{cfg.rounds}] {level:>3}% {t.name:10}"
                if not t.alive():
                    print(f"{tag} skipped: {t.name} is no longer running", file=sys.stderr)
                    continue
                rate = capacity * level / 100
                seconds = cfg.level_seconds(level)
                plan = schedule(level, rnd, rate, seconds, cfg.max_requests)
                probing = level > 100
                pids = t.cpu_pids()
                before = cpu_ticks(pids)
                data = run_load(t.port, plan, cfg.client_timeout,
                                cfg.probe_seconds if probing else 0.0, cfg.recovery_ms / 1000)
                after = cpu_ticks(pids)
                st = run_stats(data, rate, seconds, probing, cfg.recovery_ms)
                ticks = sum(after[p] - before[p] for p in after if p in before)
                st.cpu_us_per_request = ticks / CLK_TCK / max(1, st.sent) * 1e6
                res.runs[(t.name, level)].append(st)
                detail = (f"{st.served_rps:6.1f}/s of {rate:.1f}/s  p50 {fmt_ms(st.p50_ms)}"
                          f"  p99 {fmt_ms(st.p99_ms)}  p99.9 {fmt_ms(st.p999_ms)}"
                          f"  errors {st.errors}  503 {st.n503}  lag p99 {fmt_ms(st.lag_p99_ms)}"
                          f"  proxy CPU {st.cpu_us_per_request:.0f} us/req")
                if probing:
                    detail += (f"  503 p99 {fmt_ms(st.p99_503_ms)}"
                               f" (from send {fmt_ms(st.p99_503_sent_ms)})  recovery"
                               f" {fmt_s(st.recovery_s)}")
                if st.error_kinds:
                    detail += f"  {st.error_kinds}"
                print(f"{tag} {detail}", file=sys.stderr, flush=True)
                if not t.alive():
                    print(f"{tag} {t.name} exited during the run", file=sys.stderr)
                time.sleep(cfg.gap)


def warm_up(cfg: Config, targets: list[Target], capacity: float) -> None:
    if cfg.warmup <= 0:
        return
    for t in targets:
        plan = schedule(0, -1, capacity * 0.5, cfg.warmup, cfg.max_requests)
        run_load(t.port, plan, cfg.client_timeout)


# --------------------------------------------------------------------------
# Reporting


def median(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} ms" if v >= 100 else f"{v:.1f} ms"


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def fmt_ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(res: Results, names: list[str], level: int) -> dict[str, dict]:
    out = {}
    for n in names:
        runs = res.runs.get((n, level), [])
        if not runs:
            continue
        codes: collections.Counter = collections.Counter()
        kinds: collections.Counter = collections.Counter()
        for r in runs:
            codes.update(r.codes_503)
            kinds.update(r.error_kinds)
        unrecovered = sum(1 for r in runs if r.recovery_s is None)
        out[n] = {
            "runs": len(runs),
            "offered_rps": median([r.offered_rps for r in runs]),
            "served_rps": median([r.served_rps for r in runs]),
            "p50_ms": median([r.p50_ms for r in runs]),
            "p99_ms": median([r.p99_ms for r in runs]),
            "p999_ms": median([r.p999_ms for r in runs]),
            "max_ms": max((r.max_ms for r in runs if r.max_ms is not None), default=None),
            "errors": sum(r.errors for r in runs),
            "error_kinds": dict(kinds),
            "n503": median([r.n503 for r in runs]),
            "codes_503": dict(codes),
            "p99_503_ms": median([r.p99_503_ms for r in runs]),
            "p99_503_sent_ms": median([r.p99_503_sent_ms for r in runs]),
            "cpu_us_per_request": median([r.cpu_us_per_request for r in runs]),
            "other": sum(r.other for r in runs),
            "lag_p99_ms": median([r.lag_p99_ms for r in runs]),
            # unrecovered runs count as the whole probing window (so as "worse than")
            "recovery_s": median([r.recovery_s if r.recovery_s is not None else math.inf
                                  for r in runs]) if level > 100 else None,
            "unrecovered": unrecovered if level > 100 else 0,
        }
    return out


def verdict(ratio: float | None, target: float) -> str:
    if ratio is None:
        return "n/a"
    return "ok" if ratio <= target else f"MISSED ({ratio:.3g}x)"


def print_report(cfg: Config, targets: list[Target], skipped: dict[str, str],
                 versions: dict[str, str], capacity: float, overhead_ms: float | None,
                 res: Results) -> None:
    names = [t.name for t in targets]
    levels = {lv: summarize(res, names, lv) for lv in cfg.levels}
    print()
    print(f"## shoal routing benchmark (bench/routing.sh): {cfg.rounds} interleaved round(s),"
          " medians")
    print()
    how = (f"measured overhead {overhead_ms:.2f} ms per request" if overhead_ms is not None
           else "BENCH_CAPACITY")
    print(f"- app: {INSTANCES} single-threaded Python instances (http.server, one request per"
          " connection, backlog 2048); service time 95% 5 ms, 4.5% 50 ms, 0.5% 500 ms (sleep)")
    print(f"- capacity {capacity:.0f} req/s = 4 / ({MEAN_MS:.1f} ms mean service + overhead;"
          f" {how}); open-loop constant rate, latency from the intended send time")
    print(f"- {cfg.seconds:.3g} s per run at 50/80/95%, {cfg.overload_seconds:.3g} s at 130%;"
          f" client timeout {cfg.client_timeout:g} s; pinning:"
          + (f" generator core {cfg.cores[0]}, servers core {cfg.cores[1]}" if cfg.cores
             else " none") + f"; nice {cfg.nice}")
    for t in targets:
        print(f"- {t.name}: {t.setup} ({versions.get(t.name.split('-')[0], '')})")
    for name, why in skipped.items():
        print(f"- {name}: SKIPPED ({why})")
    print("- `shoal --max-in-flight auto`: not measured (it does not exist)")
    print()
    print("| load | config | offered/s | served/s | p50 | p99 | p99.9 | errors | 503s | lag p99 |"
          " proxy CPU/req |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lv in cfg.levels:
        for n in names:
            s = levels[lv].get(n)
            if not s:
                continue
            runs = f" ({s['runs']}/{cfg.rounds})" if s["runs"] < cfg.rounds else ""
            print(f"| {lv}% | {n}{runs} | {s['offered_rps']:.0f} | {s['served_rps']:.0f} |"
                  f" {fmt_ms(s['p50_ms'])} | {fmt_ms(s['p99_ms'])} | {fmt_ms(s['p999_ms'])} |"
                  f" {s['errors']} | {s['n503']:g} | {fmt_ms(s['lag_p99_ms'])} |"
                  f" {s['cpu_us_per_request']:.0f} us |")
    over = [lv for lv in cfg.levels if lv > 100]
    for lv in over:
        print()
        print(f"At {lv}% for {cfg.overload_seconds:.3g} s, then probes every"
              f" {PROBE_PERIOD * 1000:.0f} ms (recovered: every later probe 200 within"
              f" {cfg.recovery_ms:g} ms):")
        print()
        print("| config | served p99 | served max | 503s (codes, all rounds) | time to 503 p99"
              " (from send) | recovery |")
        print("|---|---:|---:|---:|---:|---:|")
        for n in names:
            s = levels[lv].get(n)
            if not s:
                continue
            codes = ", ".join(f"{c} {v}" for c, v in sorted(s["codes_503"].items()))
            rec = s["recovery_s"]
            rec_text = (f"> {cfg.probe_seconds:g} s" if rec == math.inf else fmt_s(rec))
            if s["unrecovered"]:
                rec_text += f" ({s['unrecovered']} run(s) not within {cfg.probe_seconds:g} s)"
            print(f"| {n} | {fmt_ms(s['p99_ms'])} | {fmt_ms(s['max_ms'])} |"
                  f" {s['n503']:g}{f' ({codes})' if codes else ''} |"
                  f" {fmt_ms(s['p99_503_ms'])} ({fmt_ms(s['p99_503_sent_ms'])}) | {rec_text} |")
    ratios = []
    pairs = (("shoal-mif1", "haproxy"), ("shoal-mif1", "nginx"), ("shoal-p2c", "nginx"))
    print()
    print("p99 ratios: the median over rounds of each round's ratio (the two runs of a round"
          " ran minutes apart,")
    print("so a disturbance of the machine hits both less often); in brackets the ratio of the"
          " medians above.")
    print()
    print("| load | p99 shoal-mif1 / haproxy | p99 shoal-mif1 / nginx | p99 shoal-p2c / nginx |")
    print("|---|---:|---:|---:|")
    for lv in cfg.levels:
        row: dict[str, object] = {"level": lv}
        cells = []
        for a, b in pairs:
            per_round = [fmt_ratio(x.p99_ms, y.p99_ms) for x, y in
                         zip(res.runs.get((a, lv), []), res.runs.get((b, lv), []))]
            paired = median(per_round)
            of_medians = fmt_ratio(levels[lv].get(a, {}).get("p99_ms"),
                                   levels[lv].get(b, {}).get("p99_ms"))
            key = f"{a.split('-')[-1]}_vs_{b}"
            row[key] = paired
            row[key + "_per_round"] = per_round
            row[key + "_of_medians"] = of_medians
            cells.append("-" if paired is None else
                         f"{paired:.2f}x ({of_medians:.2f}x)" if of_medians is not None
                         else f"{paired:.2f}x")
        ratios.append(row)
        print(f"| {lv}% | {cells[0]} | {cells[1]} | {cells[2]} |")
    print()
    at80 = next((r for r in ratios if r["level"] == 80), None)
    total_errors = sum(s["errors"] for lv in levels.values() for s in lv.values())
    print("Targets (issue 14):")
    if at80:
        print(f"- 80% (per-round ratios): shoal-mif1 p99 <= 1.0x haproxy: {verdict(at80['mif1_vs_haproxy'], 1.0)};"
              f" <= 0.5x nginx: {verdict(at80['mif1_vs_nginx'], 0.5)}")
    print(f"- 0 connection errors everywhere: {'ok' if total_errors == 0 else 'MISSED'}"
          f" ({total_errors})")
    for lv in over:
        s = levels[lv].get("shoal-mif1")
        if s:
            shed = s["p99_503_sent_ms"]
            rec = s["recovery_s"]
            print(f"- {lv}%: shoal-mif1 served p99 {fmt_ms(s['p99_ms'])} (bounded by the"
                  f" {10} s queue timeout: {'ok' if s['p99_ms'] and s['p99_ms'] <= 10500 else 'MISSED'});"
                  f" time to 503 p99 from send {fmt_ms(shed)} (<= 10 ms: "
                  f"{'n/a' if shed is None else 'ok' if shed <= 10 else 'MISSED'});"
                  f" recovery {fmt_s(rec) if rec != math.inf else 'not within the window'}"
                  f" (<= 1 s: {'ok' if rec is not None and rec <= 1 else 'MISSED'})")
    lag = max((s["lag_p99_ms"] or 0 for lv in levels.values() for s in lv.values()), default=0)
    if lag > 5:
        print(f"- note: the generator sent some requests late (lag p99 up to {lag:.1f} ms);"
              " latencies still count from the intended send time")
    summary = {
        "config": {"rounds": cfg.rounds, "seconds": cfg.seconds,
                   "overload_seconds": cfg.overload_seconds, "levels": cfg.levels,
                   "capacity_rps": capacity, "overhead_ms": overhead_ms,
                   "client_timeout": cfg.client_timeout, "cores": cfg.cores,
                   "nice": cfg.nice, "peer_headers": cfg.peer_headers},
        "versions": versions,
        "setup": {t.name: t.setup for t in targets},
        "skipped": skipped,
        "results": {str(lv): {n: {k: None if v == math.inf else v for k, v in s.items()}
                              for n, s in v.items()} for lv, v in levels.items()},
        "ratios": ratios,
        "runs": {f"{n}@{lv}": [asdict(r) for r in runs] for (n, lv), runs in res.runs.items()},
    }
    print()
    print("BENCH_SUMMARY " + json.dumps(summary, sort_keys=True, default=str))


# --------------------------------------------------------------------------
# Main


def start_all(cfg: Config, wanted: list[str], procs: Processes,
              skipped: dict[str, str]) -> tuple[list[Target], list[int]]:
    ports = ([cfg.port, cfg.port + 1, cfg.port + 2, cfg.port + 10]
             + [cfg.port + b + i for b in (100, 110, 200) for i in range(INSTANCES)])
    if busy := [p for p in ports if not port_free(p)]:
        raise BenchFailure(f"ports already in use: {busy} (choose another base with BENCH_PORT)")
    started: dict[str, Target] = {}
    shoal_configs = {"shoal-p2c": (cfg.port, [], "--balance"),
                     "shoal-mif1": (cfg.port + 10, ["--max-in-flight", "1", *cfg.mif1_args],
                                    "--max-in-flight")}
    for name, (port, extra, flag) in shoal_configs.items():
        if name not in wanted:
            continue
        problem = shoal_problem(cfg.shoal, flag)
        if problem is None:
            try:
                started[name] = start_shoal(cfg, procs, name, port, extra)
            except BenchFailure as exc:
                problem = f"did not start: {exc}"
        if problem:
            skipped[name] = problem
            print(f"skipping {name}: {problem}", file=sys.stderr)
    backends = start_instances(cfg, procs)
    for name, start in (("nginx", start_nginx), ("haproxy", start_haproxy)):
        if name not in wanted:
            continue
        if not shutil.which(name):
            skipped[name] = f"{name} not found on PATH"
            continue
        try:
            started[name] = start(cfg, procs, backends)
        except BenchFailure as exc:
            skipped[name] = f"did not start: {exc}"
            print(f"skipping {name}: {exc}", file=sys.stderr)
    return [started[n] for n in wanted if n in started], backends


def main() -> int:
    args = parse_args()
    wanted = [n.strip() for n in args.targets.split(",") if n.strip()]
    if unknown := [n for n in wanted if n not in TARGETS]:
        sys.exit(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    os.environ["PATH"] += ":/usr/sbin:/sbin"  # nginx and haproxy live in /usr/sbin
    cores = None
    allowed = sorted(os.sched_getaffinity(0))
    if args.pin and len(allowed) >= 2 and shutil.which("taskset"):
        cores = (allowed[0], allowed[1])
        os.sched_setaffinity(0, {cores[0]})
    # Thousands of connections are open at once at 130%; children inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else 65536, hard))
    if args.nice:
        # A shared machine (cargo builds beside the benchmark) delays wake-ups by tens of
        # milliseconds, which an open-loop generator counts as latency; everything the harness
        # starts inherits the priority.
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        except OSError as exc:
            print(f"could not set nice {args.nice} ({exc}); running at normal priority",
                  file=sys.stderr)
            args.nice = 0
    become_subreaper()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="shoal-bench-routing-")
    os.chmod(workdir, 0o755)
    with open(os.path.join(workdir, "app.py"), "w") as f:
        f.write(APP)
    cfg = Config(rounds=args.rounds, seconds=args.seconds,
                 overload_seconds=args.overload_seconds, levels=levels,
                 capacity=args.capacity, warmup=args.warmup, gap=args.gap,
                 client_timeout=args.client_timeout, probe_seconds=args.probe_seconds,
                 recovery_ms=args.recovery_ms, max_requests=args.max_requests,
                 deadline=args.deadline, port=args.port, workdir=workdir,
                 shoal=os.path.abspath(args.shoal), cores=cores, nice=args.nice,
                 peer_headers=bool(args.peer_headers), mif1_args=shlex.split(args.mif1_args))
    versions = {"shoal": tool_version([cfg.shoal, "--version"]),
                "nginx": tool_version(["nginx", "-v"]),
                "haproxy": tool_version(["haproxy", "-v"])}
    procs = Processes()
    skipped: dict[str, str] = {}
    res = Results()
    targets: list[Target] = []
    capacity, overhead = cfg.capacity or 0.0, None
    interrupted = False
    try:
        targets, backends = start_all(cfg, wanted, procs, skipped)
        if not targets:
            print("no configuration to benchmark", file=sys.stderr)
            return 1
        if not cfg.capacity:
            capacity, overhead = measure_capacity(cfg, backends[0])
        print(f"capacity {capacity:.1f} req/s (overhead"
              f" {'-' if overhead is None else f'{overhead:.2f}'} ms per request)",
              file=sys.stderr)
        warm_up(cfg, targets, capacity)
        run_rounds(cfg, targets, capacity, res)
    except KeyboardInterrupt:
        print("interrupted; reporting what was measured", file=sys.stderr)
        interrupted = True
    except BenchFailure as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"kept {workdir} (configs and logs)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not targets or not res.runs:
        return 1
    print_report(cfg, targets, skipped, versions, capacity, overhead, res)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
