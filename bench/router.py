#!/usr/bin/env python3
"""Side-by-side benchmark of shoal's router against nginx and haproxy, and of
shoal with its Prometheus metrics on and scraped against shoal without.

Setup (one run of this script)
  backends    Two instances of a minimal hyper server
              (crates/shoal-router/examples/bench_backend.rs): `GET /` answers
              `hello\\n`, `GET /bytes/N` streams N bytes in 64 KiB chunks.
              When shoal is usable, shoal itself starts them as `web.1`/`web.2`
              (`shoal start -f Procfile -m web=2 -p PORT`, Procfile
              `web: bench_backend`), and nginx and haproxy use those very same
              two instances as their upstream servers. Without shoal, the
              harness starts the two backends itself on the same ports.
  proxies     All three run at once for the whole benchmark, each on its own
              loopback port, idle while another one is measured:
              shoal    router on PORT; its stdout (one `router` access-log line
                       per request) goes to a file.
              nginx    worker_processes 1; upstream keepalive 64; HTTP/1.1 to
                       the upstream with `Connection ""`; access_log to a file
                       (default `combined` format); other settings default.
              haproxy  mode http, nbthread 1, option http-keep-alive,
                       roundrobin over the two servers; `option httplog` sent
                       to `log stdout`, which goes to a file (BENCH_HAPROXY_LOG=0
                       turns logging off).
              shoal-metrics
                       a second shoal formation, set up as `shoal` (its own two
                       bench_backend instances, web=2) plus `--metrics
                       127.0.0.1:P+11`: router on P+10, instances on P+110 and
                       P+111, clear of the first formation's. During each of
                       its measurements the harness GETs http://127.0.0.1:P+11/
                       metrics once a second (as Prometheus would) and counts
                       the scrapes and the failed ones (not 200, no `# TYPE`
                       line, or no answer within 5 s). (issue 16)
              Every access log is emptied before each load run and its lines
              are counted after it, as a check that every request was logged.
  pinning     The load generator (wrk, curl) and this harness run on one core,
              the proxies and the backends on another (`taskset`; the first
              two cores the harness may use, normally 0 and 1), so a proxy
              competes only with the backends it feeds, the same for all three.

Measurements, in interleaved rounds (every round runs each measurement once
per proxy, in an order rotated from round to round); medians are reported
  load        `wrk -t1 -cN -dS --latency http://127.0.0.1:PORT/`: requests/s
              and p50/p99 latency. Proxy CPU time per request = utime+stime
              (from /proc/PID/stat) of the proxy's processes, read just before
              and just after wrk, divided by the requests wrk completed. The
              proxy's processes are: shoal's own process only (not its
              instances; it also answers the scrapes of shoal-metrics); nginx's
              master and worker; haproxy's one process.
              Resolution is one clock tick (10 ms) per run.
  download    `curl -o /dev/null http://127.0.0.1:PORT/bytes/1073741824`,
              curl's average speed in MB/s (10^6 bytes). Meanwhile the
              resident memory (VmRSS, summed over the proxy's processes) is
              sampled every 50 ms; it is sampled during load runs too.
  memory      shoal's peak: the highest VmRSS sample and VmHWM (the kernel's
              lifetime peak for the process) read at the end.

Ratios (shoal against its peers; targets from issue 3)
  requests/s      shoal / best of nginx, haproxy            target >= 1.0x
  CPU per request shoal / lowest of nginx, haproxy          target <= 1.0x
  1 GiB download  shoal / haproxy                           target >= 1.0x
  peak memory     shoal's peak resident memory / 64 MiB     target <  1.0x

--metrics overhead (shoal-metrics against shoal; target from issue 16)
  requests/s      shoal-metrics / shoal                     target >= 0.97x
  CPU per request shoal-metrics / shoal                     (shown, no target)
  Each is reported per round (the two load runs of one round) and as the
  median of the per-round ratios; the verdict uses that median. The ratios
  above (shoal against its peers) use the `shoal` formation only.

Also reported: errors (wrk's non-2xx and socket errors), access-log lines per
request (~1.00 when every request was logged), proxy CPU per download, the
metrics scrapes and failed scrapes, and the per-round values (in BENCH_SUMMARY).

What skews the comparison (known, left as each proxy's default)
  - The three access logs differ in format and size (shoal's logfmt with
    timings, nginx's `combined`, haproxy's `httplog`) and in buffering.
  - Balancing: shoal uses power of two choices; nginx and haproxy round robin.
  - Headers: shoal always sets X-Forwarded-For/-Proto/-Host/-Port and an
    X-Request-Id (also returned to the client), and passes the client's Host.
    nginx and haproxy are configured to do the same (BENCH_PEER_HEADERS=1,
    the default), since the instances' work grows with the headers they parse;
    with BENCH_PEER_HEADERS=0 they run their defaults (nginx sends only Host:
    instances and Connection, haproxy adds nothing).
  - nginx's `keepalive 64` is one idle cache for both servers: with 64 client
    connections and round robin it sometimes finds no idle connection to the
    chosen server, opens one, and closes another (BENCH_NGINX_KEEPALIVE=128
    avoids that). nginx also closes a client connection after 1000 requests
    (keepalive_requests), and wrk reconnects.
  - nginx buffers responses (proxy_buffering on): the download spills to a
    temporary file on disk; the report notes when nginx said so.
  - shoal-metrics against shoal: two formations of the same binary, each
    with its own two instances (nginx and haproxy share shoal's). The
    scraper is a thread of this harness, on the load generator's core, busy
    a few milliseconds a second during shoal-metrics' runs only. The rotated
    order puts shoal-metrics' run before shoal's in some rounds, after it in
    others.
  - The machine is shared with whatever else runs (a cargo build, say); the
    run-to-run spread is a few percent, so ratios within ~0.03 of a target
    are a tie. Run more rounds (BENCH_ROUNDS) on a quiet machine.

Every wait has a deadline (BENCH_DEADLINE). Every process is started in a new
session, the harness makes itself a child subreaper, and at the end every
process group is terminated and any leftover descendant is killed. When
shoal's CLI has no router yet (`shoal start --help` does not mention
--balance) or shoal does not come up, shoal is skipped with a message and
nginx and haproxy are still measured.

Running
  bench/router.sh                 installs nginx/haproxy/wrk, builds, runs this
  python3 bench/router.py --shoal PATH --backend PATH

Environment (defaults in brackets)
  SHOAL_BIN        shoal binary [$CARGO_TARGET_DIR or target, /release/shoal]
  BACKEND_BIN      bench_backend binary [same dir, /release/examples/bench_backend]
  BENCH_PROXIES    comma-separated subset of shoal,shoal-metrics,nginx,haproxy
                   [all]; e.g. shoal,nginx,haproxy skips the metrics run,
                   shoal,shoal-metrics measures only the --metrics overhead
  BENCH_ROUNDS     rounds [3]
  BENCH_SECONDS    seconds per wrk run [10]
  BENCH_WARMUP     seconds of unrecorded wrk per proxy before round 1 [2]
  BENCH_CONNECTIONS wrk connections [64] (one wrk thread)
  BENCH_DOWNLOAD   bytes in the streamed download [1073741824]
  BENCH_HAPROXY_LOG 1 = haproxy logs every request to a file, 0 = no log [1]
  BENCH_PEER_HEADERS 1 = nginx and haproxy set the forwarding headers shoal
                   always sets, 0 = their defaults [1]
  BENCH_DEADLINE   seconds for any startup or wait [60]
  BENCH_NGINX_KEEPALIVE  nginx's upstream `keepalive` (idle connections kept) [64]
  BENCH_KEEP       1 = keep the temp dir with configs and logs [0]
  BENCH_PORT       shoal's port P; nginx P+1, haproxy P+2, backends P+100,
                   P+101 (shoal's scheme: instances one block of 100 above);
                   shoal-metrics P+10, its metrics P+11, its instances P+110,
                   P+111 [18000]

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Self

PROXIES = ("shoal", "shoal-metrics", "nginx", "haproxy")
PEERS = ("nginx", "haproxy")
METRICS = "shoal-metrics"       # shoal with --metrics, scraped during its runs
METRICS_OFFSET = 10             # its router on P+10, its metrics on P+11
METRICS_TARGET = 0.97           # its requests/s against shoal's (issue 16)
SCRAPE_SECONDS = 1.0
SCRAPE_TIMEOUT = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
MEMORY_TARGET_MIB = 64
RSS_SAMPLE_SECONDS = 0.05
READY_LINE = re.compile(r"\b(web\.\d+) is ready on port (\d+)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class BenchFailure(Exception):
    """A run or a startup missed a deadline or went wrong."""


# --------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    rounds: int
    seconds: int
    warmup: int
    connections: int
    download_bytes: int
    haproxy_log: bool
    peer_headers: bool
    nginx_keepalive: int
    deadline: float
    port: int
    workdir: str
    shoal: str
    backend: str
    cores: tuple[int, int] | None  # (load generator, proxies); None = no pinning

    def pinned(self, role: str, argv: list[str]) -> list[str]:
        """`argv` under taskset on the core for `role` ("load" or "proxy")."""
        if self.cores is None:
            return argv
        core = self.cores[0] if role == "load" else self.cores[1]
        return ["taskset", "-c", str(core), *argv]


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    target = env("CARGO_TARGET_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shoal", default=env("SHOAL_BIN") or os.path.join(target, "release", "shoal"))
    p.add_argument("--backend", default=env("BACKEND_BIN")
                   or os.path.join(target, "release", "examples", "bench_backend"))
    p.add_argument("--proxies", default=env("BENCH_PROXIES") or ",".join(PROXIES))
    p.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS") or 3))
    p.add_argument("--seconds", type=int, default=int(env("BENCH_SECONDS") or 10))
    p.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP") or 2))
    p.add_argument("--connections", type=int, default=int(env("BENCH_CONNECTIONS") or 64))
    p.add_argument("--download", type=int, default=int(env("BENCH_DOWNLOAD") or 1 << 30))
    p.add_argument("--haproxy-log", type=int, choices=(0, 1),
                   default=int(env("BENCH_HAPROXY_LOG") or 1))
    p.add_argument("--peer-headers", type=int, choices=(0, 1),
                   default=int(env("BENCH_PEER_HEADERS") or 1))
    p.add_argument("--nginx-keepalive", type=int,
                   default=int(env("BENCH_NGINX_KEEPALIVE") or 64))
    p.add_argument("--deadline", type=float, default=float(env("BENCH_DEADLINE") or 60))
    p.add_argument("--port", type=int, default=int(env("BENCH_PORT") or 18000))
    return p.parse_args()


# --------------------------------------------------------------------------
# /proc helpers


@dataclass
class ProcStat:
    pid: int
    ppid: int
    state: str
    cpu_ticks: int  # utime + stime, all threads


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime/stime are fields 14/15.
    return ProcStat(pid=pid, ppid=int(rest[1]), state=rest[0],
                    cpu_ticks=int(rest[11]) + int(rest[12]))


def read_status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM); 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def descendants(root: int) -> list[ProcStat]:
    """All processes below `root` (not including it), zombies included."""
    children: dict[int, list[ProcStat]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                children[st.ppid].append(st)
    found, todo = [], [root]
    while todo:
        for st in children.get(todo.pop(), []):
            found.append(st)
            todo.append(st.pid)
    return found


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    stats = (read_stat(pid) for pid in pids)
    return {st.pid: st.cpu_ticks for st in stats if st is not None}


def become_subreaper() -> None:
    """Orphaned descendants get reparented to us instead of init, so cleanup
    can still find instances whose supervisor died or detached them."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def kill_strays() -> None:
    """SIGKILL every live process below the harness, then reap them."""
    me = os.getpid()
    for _ in range(50):
        alive = [st for st in descendants(me) if st.state not in ("Z", "X")]
        if not alive:
            break
        for st in alive:
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


class Periodic:
    """Calls `tick` in a thread at once and then every `interval` seconds (ticks
    missed while one ran long are skipped), while used as a context manager."""

    def __init__(self, interval: float):
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            self.tick()
            now = time.monotonic()
            due += self.interval * max(1, -(-(now - due) // self.interval))
            if self.stop.wait(due - now):
                return

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class PeakRss(Periodic):
    """Samples the summed VmRSS of some processes every 50 ms; `peak_kib` is
    the highest sample."""

    def __init__(self, pids: Callable[[], list[int]]):
        super().__init__(RSS_SAMPLE_SECONDS)
        self.pids = pids
        self.sampled: list[int] | None = None
        self.peak_kib = 0

    def tick(self) -> None:
        if self.sampled is None:
            self.sampled = self.pids()
        self.peak_kib = max(self.peak_kib,
                            sum(read_status_kib(p, "VmRSS") for p in self.sampled))


class Scraper(Periodic):
    """GETs a Prometheus metrics URL once a second, as a scraper would, and
    counts the scrapes, the failed ones (with the first reason) and the
    slowest."""

    def __init__(self, url: str):
        super().__init__(SCRAPE_SECONDS)
        self.url = url
        self.scrapes = 0
        self.failures = 0
        self.first_failure = ""
        self.slowest_ms = 0.0

    def tick(self) -> None:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(self.url, timeout=SCRAPE_TIMEOUT) as resp:
                body = resp.read()
                problem = "" if resp.status == 200 and b"# TYPE " in body else \
                    f"HTTP {resp.status}, {len(body)} bytes without a `# TYPE` line"
        except OSError as exc:
            problem = str(exc)
        self.slowest_ms = max(self.slowest_ms, (time.monotonic() - start) * 1000)
        self.scrapes += 1
        if problem:
            self.failures += 1
            self.first_failure = self.first_failure or problem

    def counts(self) -> dict[str, int | float | str]:
        """The scrape fields of a measurement's result (see `Observed`)."""
        return {"scrapes": self.scrapes, "scrape_failures": self.failures,
                "scrape_slowest_ms": round(self.slowest_ms, 1),
                "scrape_error": self.first_failure}


# --------------------------------------------------------------------------
# Processes


class Processes:
    """Everything the harness started, each in its own session; `close`
    terminates them all and kills whatever is left below the harness."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], output: str, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        with open(output, "ab") as out:  # O_APPEND: the file can be emptied under it
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        kill_strays()


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
    """Until `url` answers 200; fails when `proc` exits or the deadline passes."""
    limit = time.monotonic() + deadline
    while not http_ok(url):
        if proc.poll() is not None:
            raise BenchFailure(f"{what} exited with {proc.returncode}; last output:\n{output_tail(log)}")
        if time.monotonic() > limit:
            raise BenchFailure(f"{what}: {url} did not answer 200 within {deadline:.0f}s;"
                               f" last output:\n{output_tail(log)}")
        time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As servers do: sockets of earlier runs in TIME_WAIT do not count.
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
    return short_version(lines[0].strip()) if lines else "unknown"


def short_version(line: str) -> str:
    """`nginx version: nginx/1.22.1` -> `nginx/1.22.1`; drops copyright, URL, build."""
    line = re.sub(r"^nginx version: ", "", line).replace(" version ", " ")
    return re.sub(r"\s+(Copyright.*|-\s+https?://.*|\(.*)$", "", line)


# --------------------------------------------------------------------------
# The proxies and their backends


@dataclass
class Proxy:
    name: str
    port: int
    proc: subprocess.Popen
    cpu_pids: Callable[[], list[int]]  # processes whose CPU and memory count
    access_log: str                    # emptied before, counted after each load run
    log_marker: bytes                  # what one access-log line contains
    setup: str                         # one line for the report
    metrics_url: str | None = None     # scraped during each measurement, when set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


def shoal_usable(binary: str, flag: str = "--balance") -> str | None:
    """None when shoal's CLI has the router (`start --help` mentions --balance)
    or whatever else `flag` needs, else why not."""
    if not os.access(binary, os.X_OK):
        return f"{binary} not found or not executable"
    try:
        out = subprocess.run([binary, "start", "--help"], capture_output=True, text=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`shoal start --help` failed: {exc}"
    if out.returncode != 0 or flag not in out.stdout + out.stderr:
        return f"`shoal start --help` does not mention {flag} (not wired in yet?)"
    return None


def start_shoal(cfg: Config, procs: Processes, name: str = "shoal") -> tuple[Proxy, list[int]]:
    """A shoal formation with two bench_backend web instances; returns the proxy
    and the instances' ports (taken from its `web.N is ready on port N` lines).
    `shoal-metrics` is the same on P+10 with --metrics on P+11. Stops the
    formation when it does not come up."""
    d = os.path.join(cfg.workdir, name)
    os.makedirs(d)
    procfile = os.path.join(d, "Procfile")
    with open(procfile, "w") as f:
        f.write(f"web: {cfg.backend}\n")
    log = os.path.join(d, "stdout.log")
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    env["NO_COLOR"] = "1"
    port, extra, metrics_url = cfg.port, [], None
    setup = "router log lines on stdout -> file; default balance (p2c)"
    if name == METRICS:
        port = cfg.port + METRICS_OFFSET
        metrics = f"127.0.0.1:{port + 1}"
        extra, metrics_url = ["--metrics", metrics], f"http://{metrics}/metrics"
        setup = f"as shoal, plus --metrics {metrics}, scraped every {SCRAPE_SECONDS:g} s"
    argv = cfg.pinned("proxy", [cfg.shoal, "start", "-f", procfile, "-d", d,
                                "-m", "web=2", "-p", str(port), *extra])
    proc = procs.spawn(argv, log, env=env, cwd=d)
    try:
        ports = wait_instances(cfg, proc, log, name)
        for url in (f"http://127.0.0.1:{port}/", metrics_url):
            if url:
                wait_http(url, proc, cfg.deadline, name, log)
    except BenchFailure:
        procs.stop(proc)
        raise
    proxy = Proxy(name, port, proc, lambda: [proc.pid], log, b" router ", setup, metrics_url)
    return proxy, ports


def wait_instances(cfg: Config, proc: subprocess.Popen, log: str, name: str) -> list[int]:
    """The ports of web.1 and web.2, once shoal says both are ready."""
    limit = time.monotonic() + cfg.deadline
    ready: dict[str, int] = {}
    while len(ready) < 2:
        with open(log, "rb") as f:
            text = ANSI.sub("", f.read().decode(errors="replace"))
        ready = {m.group(1): int(m.group(2)) for m in READY_LINE.finditer(text)}
        if proc.poll() is not None:
            raise BenchFailure(f"{name} exited with {proc.returncode}; last output:\n{output_tail(log)}")
        if time.monotonic() > limit:
            raise BenchFailure(f"{name}: saw {len(ready)}/2 `web.N is ready` lines within"
                               f" {cfg.deadline:.0f}s; last output:\n{output_tail(log)}")
        time.sleep(0.05)
    return [ready[n] for n in sorted(ready)]


def start_backends(cfg: Config, procs: Processes) -> list[int]:
    """Two bench_backend processes on the proxies' core, when shoal does not run them."""
    ports = [cfg.port + 100, cfg.port + 101]
    for port in ports:
        log = os.path.join(cfg.workdir, f"backend-{port}.log")
        env = dict(os.environ, PORT=str(port))
        proc = procs.spawn(cfg.pinned("proxy", [cfg.backend]), log, env=env)
        wait_http(f"http://127.0.0.1:{port}/", proc, cfg.deadline, f"bench_backend :{port}", log)
    return ports


def start_nginx(cfg: Config, procs: Processes, backends: list[int]) -> Proxy:
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
    with open(conf, "w") as f:
        f.write(f"""daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {d}/access.log;
{temp_paths}    upstream instances {{
{servers}        keepalive {cfg.nginx_keepalive};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://instances;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{nginx_headers}        }}
    }}
}}
""")
    log = os.path.join(d, "stdout.log")
    proc = procs.spawn(cfg.pinned("proxy", ["nginx", "-c", conf, "-p", d + "/"]), log)
    wait_http(f"http://127.0.0.1:{port}/", proc, cfg.deadline, "nginx",
              os.path.join(d, "error.log"))
    return Proxy("nginx", port, proc,
                 lambda: [proc.pid] + [st.pid for st in descendants(proc.pid)],
                 os.path.join(d, "access.log"), b"\n",
                 f"worker_processes 1, upstream keepalive {cfg.nginx_keepalive}, access_log -> file"
                 + PEER_HEADERS_NOTE[cfg.peer_headers])


# What shoal's router always does to a request and its response, asked of the peers too
# (BENCH_PEER_HEADERS=1), so that all three hand the instances the same work: the client's
# Host, X-Forwarded-For/-Proto/-Host/-Port, and an X-Request-Id sent to the instance and
# returned to the client.
NGINX_HEADERS = (
    "proxy_set_header Host $http_host",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
    "proxy_set_header X-Forwarded-Proto $scheme",
    "proxy_set_header X-Forwarded-Host $http_host",
    "proxy_set_header X-Forwarded-Port $server_port",
    "proxy_set_header X-Request-Id $request_id",
    "add_header X-Request-Id $request_id",
)
HAPROXY_HEADERS = (
    "option forwardfor",
    "http-request set-header X-Forwarded-Proto http",
    "http-request set-header X-Forwarded-Host %[req.hdr(host)]",
    "http-request set-header X-Forwarded-Port %[dst_port]",
    "unique-id-format %[uuid]",
    "unique-id-header X-Request-Id",
    "http-response set-header X-Request-Id %[unique-id]",
)


PEER_HEADERS_NOTE = {True: ", shoal's forwarding headers and X-Request-Id", False: ""}


def start_haproxy(cfg: Config, procs: Processes, backends: list[int]) -> Proxy:
    d = os.path.join(cfg.workdir, "haproxy")
    os.makedirs(d)
    port = cfg.port + 2
    servers = "".join(f"    server web{i} 127.0.0.1:{p}\n" for i, p in enumerate(backends, 1))
    logging = ("    log stdout format raw local0\n", "    log global\n    option httplog\n") \
        if cfg.haproxy_log else ("", "")
    haproxy_headers = "".join(f"    {line}\n" for line in HAPROXY_HEADERS) \
        if cfg.peer_headers else ""
    conf = os.path.join(d, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 4096
{logging[0]}
defaults
    mode http
{logging[1]}    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend bench
    bind 127.0.0.1:{port}
{haproxy_headers}    default_backend instances

backend instances
    balance roundrobin
{servers}""")
    log = os.path.join(d, "stdout.log")
    proc = procs.spawn(cfg.pinned("proxy", ["haproxy", "-f", conf, "-db"]), log)
    wait_http(f"http://127.0.0.1:{port}/", proc, cfg.deadline, "haproxy", log)
    setup = ("nbthread 1, http-keep-alive, roundrobin, httplog to stdout -> file"
             if cfg.haproxy_log else "nbthread 1, http-keep-alive, roundrobin, no logging")
    return Proxy("haproxy", port, proc, lambda: [proc.pid], log, b"\n",
                 setup + PEER_HEADERS_NOTE[cfg.peer_headers])


# --------------------------------------------------------------------------
# Measurements


@dataclass(kw_only=True)
class Observed:
    """What each measurement records besides its own figures: its round, and
    the scrapes of the proxy's metrics during it (shoal-metrics only)."""
    round: int = 0
    scrapes: int = 0
    scrape_failures: int = 0
    scrape_slowest_ms: float = 0.0
    scrape_error: str = ""  # the first failed scrape's reason


@dataclass
class LoadResult(Observed):
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us_per_request: float
    peak_rss_kib: int
    log_lines_per_request: float


@dataclass
class DownloadResult(Observed):
    mb_per_s: float
    cpu_s: float
    peak_rss_kib: int


WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(text: str) -> tuple[float, float, float, int, int]:
    """requests/s, p50 ms, p99 ms, completed requests, errors from wrk --latency."""
    def find(pattern: str) -> re.Match:
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise BenchFailure(f"unexpected wrk output (no {pattern!r}):\n{text}")
        return m

    def latency(pct: str) -> float:
        m = find(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$")
        return float(m.group(1)) * WRK_UNITS[m.group(2)]

    rps = float(find(r"^Requests/sec:\s+([\d.]+)").group(1))
    requests = int(find(r"^\s*(\d+) requests in ").group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(g) for g in m.groups())
    return rps, latency("50"), latency("99"), requests, errors


def count_in_file(path: str, marker: bytes) -> int:
    count, tail = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            data = tail + chunk
            count += data.count(marker)
            tail = data[-(len(marker) - 1):] if len(marker) > 1 else b""
    return count


def run_wrk(cfg: Config, proxy: Proxy, seconds: int) -> str:
    argv = cfg.pinned("load", ["wrk", "-t1", f"-c{cfg.connections}", f"-d{seconds}s",
                               "--latency", "--timeout", "5s", proxy.url + "/"])
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=seconds + cfg.deadline)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"wrk did not finish within {seconds + cfg.deadline:.0f}s") from None
    if out.returncode != 0:
        raise BenchFailure(f"wrk exited with {out.returncode}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class Observation:
    """What `observe` saw while a measurement ran."""
    ticks: int = 0                 # CPU clock ticks of the proxy's processes
    peak_rss_kib: int = 0
    scrapes: dict[str, int | float | str] = field(default_factory=dict)  # Observed's fields


@contextlib.contextmanager
def observe(proxy: Proxy):
    """Around one measurement: the proxy's CPU ticks and peak resident memory,
    and the scrapes of its metrics once a second when it has them."""
    obs = Observation()
    pids = proxy.cpu_pids()
    scraper = Scraper(proxy.metrics_url) if proxy.metrics_url else None
    with PeakRss(proxy.cpu_pids) as rss, scraper or contextlib.nullcontext():
        before = cpu_ticks(pids)
        yield obs
        after = cpu_ticks(pids)
    obs.ticks = sum(after[pid] - before[pid] for pid in after if pid in before)
    obs.peak_rss_kib = rss.peak_kib
    obs.scrapes = scraper.counts() if scraper else {}


def measure_load(cfg: Config, proxy: Proxy) -> LoadResult:
    """wrk against `/`: throughput, latency, proxy CPU per request."""
    os.truncate(proxy.access_log, 0)
    with observe(proxy) as obs:
        text = run_wrk(cfg, proxy, cfg.seconds)
    if not proxy.alive():
        raise BenchFailure(f"{proxy.name} exited during the run")
    rps, p50, p99, requests, errors = parse_wrk(text)
    if requests == 0:
        raise BenchFailure(f"wrk completed no request:\n{text}")
    time.sleep(0.2)  # let the last access-log lines land
    lines = count_in_file(proxy.access_log, proxy.log_marker)
    return LoadResult(rps=rps, p50_ms=p50, p99_ms=p99, requests=requests, errors=errors,
                      cpu_us_per_request=obs.ticks / CLK_TCK / requests * 1e6,
                      peak_rss_kib=obs.peak_rss_kib, log_lines_per_request=lines / requests,
                      **obs.scrapes)


def measure_download(cfg: Config, proxy: Proxy) -> DownloadResult:
    """One streamed download of `download_bytes` through the proxy with curl."""
    url = f"{proxy.url}/bytes/{cfg.download_bytes}"
    argv = cfg.pinned("load", ["curl", "-s", "-o", "/dev/null", "--max-time",
                               str(int(cfg.deadline * 2)), "-w",
                               "%{http_code} %{size_download} %{speed_download}", url])
    with observe(proxy) as obs:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                 timeout=cfg.deadline * 2 + 10)
        except subprocess.TimeoutExpired:
            raise BenchFailure("curl did not finish") from None
    try:
        code, size, speed = out.stdout.split()
    except ValueError:
        raise BenchFailure(f"curl exited with {out.returncode}: {out.stdout!r} {out.stderr!r}") from None
    if out.returncode != 0 or code != "200" or int(size) != cfg.download_bytes:
        raise BenchFailure(f"curl exited with {out.returncode}, HTTP {code}, {size} of"
                           f" {cfg.download_bytes} bytes")
    return DownloadResult(mb_per_s=float(speed) / 1e6, cpu_s=obs.ticks / CLK_TCK,
                          peak_rss_kib=obs.peak_rss_kib, **obs.scrapes)


def nginx_notes(cfg: Config) -> list[str]:
    """What nginx's error log says that skews the comparison."""
    try:
        with open(os.path.join(cfg.workdir, "nginx", "error.log")) as f:
            text = f.read()
    except OSError:
        return []
    notes = []
    if n := text.count("buffered to a temporary file"):
        notes.append(f"nginx buffered {n} download(s) to a temporary file on disk"
                     " (proxy_buffering on, its default: it reads the instance faster than"
                     " the client takes the body)")
    if n := len(re.findall(r"\[(error|crit|alert|emerg)\]", text)):
        notes.append(f"nginx logged {n} error(s); see its error.log (BENCH_KEEP=1 keeps it)")
    return notes


def warm_up(cfg: Config, proxies: list[Proxy]) -> None:
    """A short unrecorded wrk run per proxy: fills connection pools and caches."""
    if cfg.warmup <= 0:
        return
    for proxy in proxies:
        try:
            run_wrk(cfg, proxy, cfg.warmup)
        except BenchFailure as exc:
            print(f"warm-up of {proxy.name} failed: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------
# Reporting


@dataclass
class Results:
    load: dict[str, list[LoadResult]] = field(default_factory=lambda: collections.defaultdict(list))
    download: dict[str, list[DownloadResult]] = field(
        default_factory=lambda: collections.defaultdict(list))
    hwm_kib: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Row:
    key: str                            # its name in BENCH_SUMMARY
    label: str
    values: dict[str, float | None]     # per proxy
    unit: str
    runs: dict[str, int] | None = None  # successful runs per proxy, when it matters
    ratio: float | None = None
    target: str = ""
    verdict: str = ""


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return {
        "req/s": f"{value:,.0f}/s",
        "ms": f"{value:.2f} ms",
        "cpu-ms": f"{value:,.0f} ms",
        "us": f"{value:.1f} us",
        "MB/s": f"{value:,.0f} MB/s",
        "MiB": f"{value:.1f} MiB",
        "x": f"{value:.2f}",
    }.get(unit, f"{value:g}")


def with_ratio(row: Row, peer: float | None, target: float, higher_is_better: bool) -> Row:
    """Sets the ratio shoal / `peer` and its verdict against `target`."""
    shoal = row.values.get("shoal")
    row.target = (">=" if higher_is_better else "<=") + f"{target:.1f}x"
    if shoal is None or not peer:
        row.verdict = "n/a"
        return row
    row.ratio = shoal / peer
    ok = row.ratio >= target if higher_is_better else row.ratio <= target
    row.verdict = "ok" if ok else "MISSED"
    return row


def build_rows(cfg: Config, names: list[str], res: Results) -> list[Row]:
    def load(attr: str) -> dict[str, float | None]:
        return {n: median([getattr(r, attr) for r in res.load[n]]) for n in names}

    def download(attr: str) -> dict[str, float | None]:
        return {n: median([getattr(r, attr) for r in res.download[n]]) for n in names}

    def peak_mib(runs: dict[str, list]) -> dict[str, float | None]:
        return {n: max(r.peak_rss_kib for r in runs[n]) / 1024 if runs[n] else None for n in names}

    def peer(values: dict[str, float | None], pick: Callable) -> float | None:
        found = [values[p] for p in PEERS if values.get(p) is not None]
        return pick(found) if found else None

    load_runs = {n: len(res.load[n]) for n in names}
    down_runs = {n: len(res.download[n]) for n in names}
    rps, cpu, mbs = load("rps"), load("cpu_us_per_request"), download("mb_per_s")
    rss_load, rss_down = peak_mib(res.load), peak_mib(res.download)
    hwm = {n: res.hwm_kib[n] / 1024 if res.hwm_kib.get(n) else None for n in names}
    size = (f"{cfg.download_bytes >> 30} GiB" if cfg.download_bytes % (1 << 30) == 0
            else f"{cfg.download_bytes:,} B")
    rows = [
        with_ratio(Row("requests_per_s", "requests/s", rps, "req/s", load_runs),
                   peer(rps, max), 1.0, True),
        Row("p50_ms", "latency p50", load("p50_ms"), "ms", load_runs),
        Row("p99_ms", "latency p99", load("p99_ms"), "ms", load_runs),
        with_ratio(Row("cpu_us_per_request", "proxy CPU per request", cpu, "us", load_runs),
                   peer(cpu, min), 1.0, False),
        Row("errors", "errors (sum over load runs)",
            {n: sum(r.errors for r in res.load[n]) if res.load[n] else None for n in names}, ""),
        Row("log_lines_per_request", "access-log lines per request",
            load("log_lines_per_request"), "x"),
        Row("peak_rss_load_mib", "peak RSS under load", rss_load, "MiB"),
        with_ratio(Row("download_mb_per_s", f"{size} download", mbs, "MB/s", down_runs),
                   mbs.get("haproxy"), 1.0, True),
        Row("download_cpu_ms", "proxy CPU per download",
            {n: v * 1000 if v is not None else None for n, v in download("cpu_s").items()},
            "cpu-ms"),
        Row("peak_rss_download_mib", "peak RSS during download", rss_down, "MiB"),
        Row("vmhwm_mib", "VmHWM (lifetime peak) at the end", hwm, "MiB"),
    ]
    if METRICS in names:
        runs = {n: res.load[n] + res.download[n] for n in names}
        rows += [
            Row("metrics_scrapes", "metrics scrapes (during all runs)",
                {METRICS: sum(r.scrapes for r in runs[METRICS])}, ""),
            Row("metrics_scrape_failures", "failed metrics scrapes",
                {METRICS: sum(r.scrape_failures for r in runs[METRICS])}, ""),
            Row("metrics_scrape_slowest_ms", "slowest metrics scrape",
                {METRICS: max((r.scrape_slowest_ms for r in runs[METRICS]), default=None)}, "ms"),
        ]
    samples = [v for v in (rss_load.get("shoal"), rss_down.get("shoal"), hwm.get("shoal"))
               if v is not None]
    mem = Row("shoal_peak_memory_mib", "shoal peak memory (max of above)",
              {"shoal": max(samples) if samples else None}, "MiB",
              target=f"<{MEMORY_TARGET_MIB} MiB", verdict="n/a")
    if samples:
        mem.ratio = max(samples) / MEMORY_TARGET_MIB
        mem.verdict = "ok" if max(samples) < MEMORY_TARGET_MIB else "MISSED"
    return rows + [mem]


def metrics_overhead(res: Results) -> dict | None:
    """shoal-metrics / shoal, requests/s and CPU per request, for each round in
    which both load runs succeeded, and the median of those ratios; None when
    there is no such round."""
    plain = {r.round: r for r in res.load["shoal"]}
    rounds = [{"round": m.round,
               "requests_per_s": {METRICS: m.rps, "shoal": plain[m.round].rps},
               "cpu_us_per_request": {METRICS: m.cpu_us_per_request,
                                      "shoal": plain[m.round].cpu_us_per_request},
               "requests_per_s_ratio": m.rps / plain[m.round].rps,
               "cpu_us_per_request_ratio": (m.cpu_us_per_request / plain[m.round].cpu_us_per_request
                                            if plain[m.round].cpu_us_per_request else None),
               "scrapes": m.scrapes, "scrape_failures": m.scrape_failures}
              for m in res.load[METRICS] if m.round in plain]
    if not rounds:
        return None
    rps = median([r["requests_per_s_ratio"] for r in rounds])
    cpu = median([r["cpu_us_per_request_ratio"] for r in rounds
                  if r["cpu_us_per_request_ratio"] is not None])
    return {"rounds": rounds, "requests_per_s_ratio": rps, "cpu_us_per_request_ratio": cpu,
            "requests_per_s_target": METRICS_TARGET,
            "verdict": "ok" if rps >= METRICS_TARGET else "MISSED"}


def print_overhead(overhead: dict) -> None:
    print()
    print(f"--metrics overhead: {METRICS} / shoal, the load runs of each round; {METRICS}"
          f" scraped every {SCRAPE_SECONDS:g} s (issue 16)")
    for r in overhead["rounds"]:
        rps, cpu, cpu_ratio = r["requests_per_s"], r["cpu_us_per_request"], \
            r["cpu_us_per_request_ratio"]
        print(f"  round {r['round']:<3}  requests/s {fmt(rps[METRICS], 'req/s'):>10} /"
              f" {fmt(rps['shoal'], 'req/s'):>10} = {r['requests_per_s_ratio']:.3f}x"
              f"   CPU per request {fmt(cpu[METRICS], 'us'):>8} / {fmt(cpu['shoal'], 'us'):>8}"
              f" = {'-' if cpu_ratio is None else f'{cpu_ratio:.3f}x'}"
              f"   scrapes {r['scrapes']} ({r['scrape_failures']} failed)")
    cpu = overhead["cpu_us_per_request_ratio"]
    print(f"  median     requests/s {overhead['requests_per_s_ratio']:.3f}x (target"
          f" >={METRICS_TARGET:.2f}x: {overhead['verdict']})   CPU per request"
          f" {'-' if cpu is None else f'{cpu:.3f}x'} (no target)")


def print_report(cfg: Config, proxies: list[Proxy], skipped: dict[str, str],
                 versions: dict[str, str], backends: str, res: Results) -> None:
    names = [p.name for p in proxies]
    rows = build_rows(cfg, names, res)
    pinning = (f"wrk, curl and this harness on core {cfg.cores[0]}; proxies and backends on"
               f" core {cfg.cores[1]}" if cfg.cores else "none (fewer than 2 cores)")
    print()
    print(f"shoal router benchmark: {cfg.rounds} interleaved rounds, medians; wrk 1 thread,"
          f" {cfg.connections} connections, {cfg.seconds} s per run; download of"
          f" {cfg.download_bytes} bytes with curl")
    width = max(len(versions.get(p.name, "")) for p in proxies)
    for p in proxies:
        print(f"  {p.name:13} {versions.get(p.name, ''):{width}}  127.0.0.1:{p.port}  {p.setup}")
    for name, why in skipped.items():
        print(f"  {name:13} SKIPPED: {why}")
    print(f"  {'load':13} {versions['wrk']}; {versions['curl']}")
    print(f"  {'backends':13} {backends}")
    print(f"  {'pinning':13} {pinning}")
    print()
    header = f"{'measurement':34}" + "".join(f"{n:>15}" for n in names)
    header += f"{'ratio':>9}{'target':>12}  verdict"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = []
        for n in names:
            cell = fmt(row.values.get(n), row.unit)
            if row.runs and row.values.get(n) is not None and row.runs[n] < cfg.rounds:
                cell += f" ({row.runs[n]}/{cfg.rounds})"
            cells.append(f"{cell:>15}")
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
        print(f"{row.label:34}" + "".join(cells) + f"{ratio:>9}{row.target:>12}  {row.verdict}")
    print()
    print("ratios: requests/s = shoal / best of nginx, haproxy; CPU per request = shoal / lowest"
          " of them;")
    print(f"        download = shoal / haproxy; memory = shoal's peak / {MEMORY_TARGET_MIB} MiB."
          " CPU and RSS count shoal's process only")
    print("        (not its instances), nginx's master + worker, haproxy's one process.")
    overhead = metrics_overhead(res)
    if overhead:
        print_overhead(overhead)
    for note in res.notes:
        print(f"note: {note}")
    summary = {
        "config": {"rounds": cfg.rounds, "seconds": cfg.seconds,
                   "connections": cfg.connections, "wrk_threads": 1,
                   "download_bytes": cfg.download_bytes, "cores": cfg.cores,
                   "haproxy_logging": cfg.haproxy_log,
                   "peer_headers": cfg.peer_headers,
                   "nginx_keepalive": cfg.nginx_keepalive},
        "versions": versions,
        "setup": {p.name: p.setup for p in proxies},
        "backends": backends,
        "skipped": skipped,
        "results": {row.key: {n: row.values[n] for n in names if n in row.values}
                    for row in rows},
        "ratios": {row.key: None if row.ratio is None else round(row.ratio, 3)
                   for row in rows if row.target},
        "verdicts": {row.key: row.verdict for row in rows if row.target},
        "metrics_overhead": overhead,
        "notes": res.notes,
        "runs": {n: {"load": [dataclasses.asdict(r) for r in res.load[n]],
                     "download": [dataclasses.asdict(r) for r in res.download[n]]}
                 for n in names},
    }
    print("BENCH_SUMMARY " + json.dumps(summary, sort_keys=True))


# --------------------------------------------------------------------------
# Main


def start_all(cfg: Config, wanted: list[str], procs: Processes,
              skipped: dict[str, str]) -> tuple[list[Proxy], str]:
    """Starts the backends and the proxies; returns the proxies in the order
    asked for and a description of the backends."""
    ports = [cfg.port + i for i in (0, 1, 2, 100, 101)]
    if METRICS in wanted:
        ports += [cfg.port + METRICS_OFFSET + i for i in (0, 1, 100, 101)]
    if busy := [p for p in ports if not port_free(p)]:
        raise BenchFailure(f"ports already in use: {busy} (choose another base with BENCH_PORT)")
    started: dict[str, Proxy] = {}

    def attempt(name: str, start: Callable[[], Proxy], problem: str | None = None) -> None:
        """Starts `name` unless there is a `problem`; a failure skips it."""
        if problem is None:
            try:
                started[name] = start()
                return
            except BenchFailure as exc:
                problem = f"did not start: {exc}"
        skipped[name] = problem
        print(f"skipping {name}: {problem}", file=sys.stderr)

    backends: list[int] = []
    if "shoal" in wanted:
        def shoal() -> Proxy:
            nonlocal backends
            proxy, backends = start_shoal(cfg, procs)
            return proxy
        attempt("shoal", shoal, shoal_usable(cfg.shoal))
        if not backends:
            kill_strays()  # instances a failed shoal left on the backends' ports
    if backends:
        desc = (f"2 x bench_backend, started by shoal as web.1/web.2 on ports"
                f" {backends}; nginx and haproxy proxy to the same two")
    else:
        backends = start_backends(cfg, procs)
        desc = f"2 x bench_backend started by the harness on ports {backends}"
    if METRICS in wanted:
        attempt(METRICS, lambda: start_shoal(cfg, procs, METRICS)[0],
                shoal_usable(cfg.shoal, "--metrics"))
        if METRICS in started:
            desc += f"; {METRICS} runs 2 more of its own"
    for name, start in (("nginx", start_nginx), ("haproxy", start_haproxy)):
        if name in wanted:
            attempt(name, lambda start=start: start(cfg, procs, backends),
                    None if shutil.which(name) else f"{name} not found on PATH")
    return [started[n] for n in wanted if n in started], desc


def run_rounds(cfg: Config, proxies: list[Proxy], res: Results) -> None:
    measurements: list[tuple[str, Callable, dict]] = [
        ("load", measure_load, res.load), ("download", measure_download, res.download)]
    for rnd in range(cfg.rounds):
        k = rnd % len(proxies)
        order = proxies[k:] + proxies[:k]
        for key, fn, store in measurements:
            for proxy in order:
                tag = f"[round {rnd + 1}/{cfg.rounds}] {key:8} {proxy.name:13}"
                if not proxy.alive():
                    print(f"{tag} skipped: {proxy.name} is no longer running", file=sys.stderr)
                    continue
                try:
                    r = fn(cfg, proxy)
                except BenchFailure as exc:
                    print(f"{tag} FAILED: {exc}", file=sys.stderr)
                    continue
                r.round = rnd + 1
                store[proxy.name].append(r)
                if key == "load":
                    detail = (f"{r.rps:,.0f} req/s  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms"
                              f"  CPU {r.cpu_us_per_request:.1f} us/req  RSS"
                              f" {r.peak_rss_kib / 1024:.1f} MiB  errors {r.errors}")
                else:
                    detail = (f"{r.mb_per_s:,.0f} MB/s  CPU {r.cpu_s * 1000:.0f} ms"
                              f"  RSS {r.peak_rss_kib / 1024:.1f} MiB")
                if proxy.metrics_url:
                    detail += (f"  scrapes {r.scrapes} ({r.scrape_failures} failed"
                               f"{': ' + r.scrape_error if r.scrape_error else ''}),"
                               f" slowest {r.scrape_slowest_ms:.0f} ms")
                print(f"{tag} {detail}", file=sys.stderr, flush=True)


def main() -> int:
    args = parse_args()
    wanted = [n.strip() for n in args.proxies.split(",") if n.strip()]
    if unknown := [n for n in wanted if n not in PROXIES]:
        sys.exit(f"unknown proxies {unknown}; choose from {', '.join(PROXIES)}")
    for tool in ("wrk", "curl", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (bench/router.sh installs it)")
    backend = os.path.abspath(args.backend)
    if not os.access(backend, os.X_OK):
        sys.exit(f"bench_backend not found at {backend} (cargo build --release -p shoal-router"
                 " --example bench_backend, or set BACKEND_BIN)")
    allowed = sorted(os.sched_getaffinity(0))
    cores = (allowed[0], allowed[1]) if len(allowed) >= 2 else None
    if cores:
        os.sched_setaffinity(0, {cores[0]})  # the harness samples on the load generator's core
    else:
        print("fewer than 2 cores: nothing is pinned", file=sys.stderr)
    become_subreaper()
    # SIGTERM/SIGHUP end the run like Ctrl-C, so that cleanup still happens.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="shoal-bench-router-")
    os.chmod(workdir, 0o755)
    cfg = Config(rounds=args.rounds, seconds=args.seconds, warmup=args.warmup,
                 connections=args.connections, download_bytes=args.download,
                 haproxy_log=bool(args.haproxy_log),
                 peer_headers=bool(args.peer_headers), nginx_keepalive=args.nginx_keepalive,
                 deadline=args.deadline, port=args.port,
                 workdir=workdir, shoal=os.path.abspath(args.shoal), backend=backend, cores=cores)
    versions = {"wrk": tool_version(["wrk", "-v"]), "curl": tool_version(["curl", "--version"])}
    for name, argv in (("nginx", ["nginx", "-v"]), ("haproxy", ["haproxy", "-v"]),
                       ("shoal", [cfg.shoal, "--version"]),
                       (METRICS, [cfg.shoal, "--version"])):
        if name in wanted:
            versions[name] = tool_version(argv)
    procs = Processes()
    skipped: dict[str, str] = {}
    res = Results()
    proxies: list[Proxy] = []
    backends = ""
    interrupted = False
    try:
        proxies, backends = start_all(cfg, wanted, procs, skipped)
        if not proxies:
            print("no proxy to benchmark", file=sys.stderr)
            return 1
        warm_up(cfg, proxies)
        run_rounds(cfg, proxies, res)
        for p in proxies:
            res.hwm_kib[p.name] = sum(read_status_kib(pid, "VmHWM") for pid in p.cpu_pids())
        res.notes += nginx_notes(cfg)
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
    if not proxies:
        return 1
    print_report(cfg, proxies, skipped, versions, backends, res)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
