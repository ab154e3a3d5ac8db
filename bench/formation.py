#!/usr/bin/env python3
"""Side-by-side benchmark of shoal against foreman and honcho.

All three supervisors run the same Procfiles (written to a temp dir), in one
run, interleaved: for every round, for every measurement, each tool runs once,
in an order rotated from round to round. The median per tool and measurement
is reported, together with the ratio of shoal against the faster peer.

Measurements
  start       Launch a 30-instance formation (``worker: echo "up $PORT"; exec
              sleep 1000``). Time from just before spawning the supervisor
              until the 30th distinct ``up PORT`` line has been read from its
              stdout pipe. Ratio = best peer time / shoal time.
  throughput  4 instances each print N lines (``seq | sed``) as fast as they
              can, then sleep. The supervisor's stdout goes to a file, which
              is polled every 20 ms; time from spawn until the file holds all
              4*N instance lines (taken from the file's mtime once the poll
              has seen them all). Lines/s = 4*N / time.
              Ratio = shoal lines/s / best peer lines/s.
  stop        10 sleepers; once all have printed their marker, SIGTERM the
              supervisor process (only it, not its group) and time until it
              has exited. Ratio = best peer time / shoal time.
  idle CPU    10 sleepers; once running (plus 1 s to settle), the CPU time
              (utime+stime from /proc/PID/stat) used over BENCH_IDLE_SECONDS by
              the supervisor and its helper processes (every descendant except
              the instances themselves; honcho runs one helper per instance).
              Resolution is one clock tick (10 ms). Reported only, no target.

Each wait has a deadline (BENCH_DEADLINE, default 60 s); a run that misses it
counts as failed for that tool, never as a hang, and a throughput run whose
output stops growing for BENCH_STALL seconds fails early. (foreman 0.87 can
deadlock there: it writes "started with pid" into the instance's own pipe
before its reader thread runs, so an instance that fills the 64 KiB pipe first
blocks foreman forever. Such runs show up as e.g. "(4/5)" next to the median,
which is then taken over the successful runs only.) Every supervisor starts in a
new session, and the harness makes itself a child subreaper, so that after
each run every process the supervisor left behind (including instances that
called setsid) can be found and killed.

Running
  bench/formation.sh              installs foreman/honcho, builds shoal, runs this
  python3 bench/formation.py --shoal PATH --foreman PATH --honcho PATH

Environment (defaults in brackets)
  SHOAL_BIN, FOREMAN_BIN, HONCHO_BIN   tool paths [shoal: target/release/shoal,
                                       others: found on PATH]
  BENCH_TOOLS        comma-separated subset of shoal,foreman,honcho [all]
  BENCH_ROUNDS       rounds [5]
  BENCH_LINES        lines per chatty instance, N [25000]
  BENCH_IDLE_SECONDS idle CPU sampling window [5]
  BENCH_DEADLINE     seconds before a wait counts as failed [60]
  BENCH_STALL        throughput: seconds without new output before a run
                     counts as failed (stalled) [10]
  BENCH_PORT         base port passed with -p [17000]

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

TOOLS = ("shoal", "foreman", "honcho")
PEERS = ("foreman", "honcho")
CLK_TCK = os.sysconf("SC_CLK_TCK")

START_INSTANCES = 30
CHATTY_INSTANCES = 4
STOP_INSTANCES = 10
IDLE_INSTANCES = 10

# Sleepers are `worker`s, not `web`: shoal probes `web` instances for readiness until their
# port accepts connections, and a sleeper never listens.
SLEEPER_PROCFILE = 'worker: echo "up $PORT"; exec sleep 1000\n'
# The Procfile text itself contains "up $PORT" / "log line number " but never
# followed by digits at the end of a line, so a supervisor that echoes the
# command in its own log lines cannot satisfy these patterns.
UP_MARKER = re.compile(r"\bup (\d+)\s*$")
LOG_MARKER = re.compile(rb"log line number \d+\r?$", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Commands the instances end up as; excluded from the supervisor's CPU time.
INSTANCE_COMMS = {"sleep", "sh", "seq", "sed"}


class BenchFailure(Exception):
    """A run missed a deadline or the supervisor misbehaved."""


# --------------------------------------------------------------------------
# Tools


@dataclass
class Tool:
    name: str
    binary: str

    def argv(self, procfile: str, formation: dict[str, int], port: int) -> list[str]:
        spec = ",".join(f"{name}={count}" for name, count in formation.items())
        root = os.path.dirname(procfile)
        if self.name == "honcho":
            # -f/-d are global options and must precede the subcommand;
            # the formation is -c/--concurrency.
            return [self.binary, "-f", procfile, "-d", root, "start",
                    "-c", spec, "-p", str(port)]
        if self.name == "foreman":
            return [self.binary, "start", "-f", procfile, "-m", spec,
                    "-d", root, "-p", str(port), "-t", "10"]
        return [self.binary, "start", "-f", procfile, "-m", spec, "-d", root,
                "-p", str(port), "--no-restart", "--timeout", "10"]

    def version(self) -> str:
        flag = "version" if self.name == "foreman" else "--version"
        try:
            out = subprocess.run([self.binary, flag], capture_output=True,
                                 text=True, timeout=10, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "unknown"


def shoal_usable(binary: str) -> str | None:
    """Return None when `shoal start --help` works, else the reason it doesn't."""
    if not os.access(binary, os.X_OK):
        return f"{binary} not found or not executable"
    try:
        out = subprocess.run([binary, "start", "--help"], capture_output=True,
                             text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`shoal start --help` failed: {exc}"
    if out.returncode != 0 or "--no-restart" not in out.stdout + out.stderr:
        return "`shoal start --help` does not describe --no-restart (not built yet?)"
    return None


# --------------------------------------------------------------------------
# /proc helpers


@dataclass
class ProcStat:
    pid: int
    ppid: int
    comm: str
    state: str
    cpu_ticks: int  # utime + stime


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    lpar, rpar = data.index("("), data.rindex(")")
    rest = data[rpar + 2:].split()
    # rest[0] is field 3 (state); utime/stime are fields 14/15.
    return ProcStat(pid=pid, ppid=int(rest[1]), comm=data[lpar + 1:rpar],
                    state=rest[0], cpu_ticks=int(rest[11]) + int(rest[12]))


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


def become_subreaper() -> None:
    """Orphaned descendants get reparented to us instead of init, so cleanup
    can still find instances whose supervisor died or detached them."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------
# One supervisor run


class Run:
    """A supervisor process under test, started in its own session.

    With `output` = None its stdout+stderr go to a pipe that a thread reads,
    collecting distinct `up PORT` markers; otherwise they go to that file.
    """

    def __init__(self, tool: Tool, procfile: str, formation: dict[str, int],
                 port: int, deadline: float, output: str | None = None):
        self.tool = tool
        self.deadline = deadline
        self.output = output
        self.markers: set[str] = set()
        self.marker_times: list[float] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=8)
        self.eof = False
        self.cond = threading.Condition()
        env = {k: v for k, v in os.environ.items() if k != "PORT"}
        argv = tool.argv(procfile, formation, port)
        out = open(output, "wb") if output else subprocess.PIPE
        try:
            self.t0_wall = time.time()
            self.t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                argv, cwd=os.path.dirname(procfile), env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            if output:
                out.close()
        self.reader = None
        if not output:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            now = time.perf_counter()
            line = ANSI.sub("", raw.decode(errors="replace")).rstrip("\r\n")
            with self.cond:
                self.tail.append(line)
                m = UP_MARKER.search(line)
                if m and m.group(1) not in self.markers:
                    self.markers.add(m.group(1))
                    self.marker_times.append(now)
                    self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def output_tail(self) -> str:
        if self.output:
            try:
                with open(self.output, "rb") as f:
                    f.seek(max(0, os.path.getsize(self.output) - 2000))
                    lines = f.read().decode(errors="replace").splitlines()[-8:]
            except OSError:
                lines = []
        else:
            with self.cond:
                lines = list(self.tail)
        return "\n".join("      " + ANSI.sub("", l) for l in lines) or "      (none)"

    def fail(self, what: str) -> BenchFailure:
        rc = self.proc.poll()
        state = "still running" if rc is None else f"exited with {rc}"
        return BenchFailure(f"{self.tool.name}: {what} (supervisor {state});"
                            f" last output:\n{self.output_tail()}")

    def wait_markers(self, count: int) -> float:
        """Seconds from spawn until the `count`-th distinct marker was read."""
        limit = time.monotonic() + self.deadline
        with self.cond:
            while len(self.markers) < count:
                left = limit - time.monotonic()
                if self.eof or left <= 0:
                    break
                self.cond.wait(left)
            if len(self.markers) < count:
                reason = "output ended" if self.eof else f"deadline {self.deadline:.0f}s passed"
                raise self.fail(f"saw {len(self.markers)}/{count} instances up, {reason}")
            return self.marker_times[count - 1] - self.t0

    def terminate(self) -> float:
        """SIGTERM the supervisor (not its group); seconds until it exited."""
        t0 = time.perf_counter()
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=self.deadline)
        except subprocess.TimeoutExpired:
            raise self.fail(f"did not exit within {self.deadline:.0f}s of SIGTERM") from None
        return time.perf_counter() - t0

    def shut_down(self) -> None:
        """End a run whose measurement is already taken: SIGTERM, and if the
        supervisor ignores it, only warn (close() kills it anyway)."""
        try:
            self.terminate()
        except BenchFailure as exc:
            print(f"warning: {exc}", file=sys.stderr)

    def close(self) -> int:
        """Make sure nothing from this run survives. Returns how many processes
        were still alive 2 s after the supervisor had exited by itself."""
        exited_cleanly = self.proc.poll() is not None
        if not exited_cleanly:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        leaked = 0
        me = os.getpid()
        if exited_cleanly:
            limit = time.monotonic() + 2.0
            while time.monotonic() < limit and live_descendants(me):
                time.sleep(0.02)
            leaked = len(live_descendants(me))
        # Anything left (instances in their own sessions, helpers) was
        # reparented to us (subreaper) or is still below the supervisor.
        kill_strays(exclude=self.proc.pid)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.reader is not None:
            self.reader.join(timeout=5)
            self.proc.stdout.close()
        return leaked


def live_descendants(root: int) -> list[ProcStat]:
    return [st for st in descendants(root) if st.state not in ("Z", "X")]


def kill_strays(exclude: int | None = None) -> None:
    """SIGKILL every process below the harness, then reap the ones that were
    reparented to it. `exclude` is a child that subprocess will reap itself."""
    me = os.getpid()
    for _ in range(50):
        alive = live_descendants(me)
        if not alive:
            break
        for st in alive:
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for st in descendants(me):
        if st.ppid == me and st.pid != exclude and st.state == "Z":
            try:
                os.waitpid(st.pid, os.WNOHANG)
            except ChildProcessError:
                pass


# --------------------------------------------------------------------------
# Measurements


@dataclass
class Config:
    rounds: int
    lines: int
    idle_seconds: float
    deadline: float
    stall: float
    port: int
    workdir: str
    leaks: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))


def write_procfile(cfg: Config, name: str, text: str) -> str:
    d = os.path.join(cfg.workdir, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "Procfile")
    with open(path, "w") as f:
        f.write(text)
    return path


def with_run(cfg: Config, tool: Tool, procfile: str, formation: dict[str, int],
             body: Callable[[Run], float], output: str | None = None) -> float:
    run = Run(tool, procfile, formation, cfg.port, cfg.deadline, output)
    try:
        return body(run)
    finally:
        cfg.leaks[tool.name] += run.close()


def measure_start(cfg: Config, tool: Tool) -> float:
    """Seconds from spawn until all 30 instances printed their marker."""
    procfile = write_procfile(cfg, "start", SLEEPER_PROCFILE)

    def body(run: Run) -> float:
        elapsed = run.wait_markers(START_INSTANCES)
        run.shut_down()
        return elapsed

    return with_run(cfg, tool, procfile, {"worker": START_INSTANCES}, body)


def measure_throughput(cfg: Config, tool: Tool) -> float:
    """Instance lines per second written through the supervisor to a file."""
    n = cfg.lines
    procfile = write_procfile(
        cfg, "throughput",
        f"chatty: seq 1 {n} | sed 's/^/log line number /'; exec sleep 1000\n")
    output = os.path.join(cfg.workdir, "throughput", f"{tool.name}.log")
    total = CHATTY_INSTANCES * n

    def body(run: Run) -> float:
        seen, partial = 0, b""
        limit = time.monotonic() + cfg.deadline
        progress = time.monotonic()
        with open(output, "rb") as f:
            while True:
                chunk = f.read()
                now = time.perf_counter()
                if chunk:
                    progress = time.monotonic()
                    data = partial + chunk
                    cut = data.rfind(b"\n") + 1
                    seen += len(LOG_MARKER.findall(data, 0, cut))
                    partial = data[cut:]
                if seen >= total:
                    # The file's mtime is when the last line landed, which is
                    # sharper than the 20 ms poll (to a kernel clock tick).
                    written = os.fstat(f.fileno()).st_mtime_ns / 1e9 - run.t0_wall
                    elapsed = now - run.t0
                    if 0 < written < elapsed:
                        elapsed = written
                    break
                if run.proc.poll() is not None and not chunk:
                    raise run.fail(f"exited after {seen}/{total} lines")
                if time.monotonic() - progress > cfg.stall:
                    raise run.fail(f"stalled: {seen}/{total} lines and no output for {cfg.stall:.0f}s")
                if time.monotonic() > limit:
                    raise run.fail(f"{seen}/{total} lines after {cfg.deadline:.0f}s")
                time.sleep(0.02)
        run.shut_down()
        return total / elapsed

    try:
        return with_run(cfg, tool, procfile, {"chatty": CHATTY_INSTANCES}, body, output)
    finally:
        try:
            os.unlink(output)
        except FileNotFoundError:
            pass


def measure_stop(cfg: Config, tool: Tool) -> float:
    """Seconds from SIGTERM to the supervisor's exit, 10 sleepers running."""
    procfile = write_procfile(cfg, "stop", SLEEPER_PROCFILE)

    def body(run: Run) -> float:
        run.wait_markers(STOP_INSTANCES)
        return run.terminate()

    return with_run(cfg, tool, procfile, {"worker": STOP_INSTANCES}, body)


def measure_idle_cpu(cfg: Config, tool: Tool) -> float:
    """CPU seconds the supervisor side used over the idle window."""
    procfile = write_procfile(cfg, "idle", SLEEPER_PROCFILE)

    def supervisor_ticks(run: Run) -> dict[int, int]:
        procs = [read_stat(run.proc.pid)] + [
            st for st in descendants(run.proc.pid) if st.comm not in INSTANCE_COMMS]
        return {st.pid: st.cpu_ticks for st in procs if st is not None}

    def body(run: Run) -> float:
        run.wait_markers(IDLE_INSTANCES)
        time.sleep(1.0)
        before = supervisor_ticks(run)
        time.sleep(cfg.idle_seconds)
        after = supervisor_ticks(run)
        if run.proc.poll() is not None:
            raise run.fail("supervisor exited while idle")
        run.shut_down()
        ticks = sum(after[pid] - before[pid] for pid in after if pid in before)
        return ticks / CLK_TCK

    return with_run(cfg, tool, procfile, {"worker": IDLE_INSTANCES}, body)


@dataclass
class Measurement:
    key: str
    label: str
    fn: Callable[[Config, Tool], float]
    unit: str
    higher_is_better: bool
    target: float | None


MEASUREMENTS = [
    Measurement("start", f"start ({START_INSTANCES} instances)", measure_start, "s", False, 2.0),
    Measurement("throughput", f"log throughput ({CHATTY_INSTANCES} chatty)",
                measure_throughput, "lines/s", True, 2.0),
    Measurement("stop", f"stop ({STOP_INSTANCES} instances)", measure_stop, "s", False, 1.0),
    Measurement("idle_cpu", f"idle CPU ({IDLE_INSTANCES} instances)", measure_idle_cpu,
                "cpu-s", False, None),
]


# --------------------------------------------------------------------------
# Reporting


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "FAIL"
    if unit == "lines/s":
        return f"{value:,.0f}/s"
    if unit == "cpu-s":
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio_for(m: Measurement, medians: dict[str, float | None]) -> float | None:
    shoal = medians.get("shoal")
    peers = [medians[p] for p in PEERS if medians.get(p) is not None]
    if shoal is None or not peers or m.target is None:
        return None
    if m.higher_is_better:
        return shoal / max(peers)
    return min(peers) / shoal if shoal > 0 else float("inf")


def print_report(cfg: Config, tools: list[Tool], versions: dict[str, str],
                 results: dict[str, dict[str, list[float]]]) -> None:
    names = [t.name for t in tools]
    print()
    print(f"shoal formation benchmark: {cfg.rounds} rounds, median per tool; "
          f"throughput N={cfg.lines} lines x {CHATTY_INSTANCES} instances; "
          f"idle window {cfg.idle_seconds:g} s")
    for t in tools:
        print(f"  {t.name:8} {versions[t.name]}  ({t.binary})")
    print()
    header = f"{'measurement':28}" + "".join(f"{n:>16}" for n in names)
    header += f"{'ratio':>10}{'target':>10}  verdict"
    print(header)
    print("-" * len(header))
    summary: dict[str, object] = {"rounds": cfg.rounds, "lines": cfg.lines}
    for m in MEASUREMENTS:
        if m.key not in results:
            continue
        medians = {n: median_or_none(results[m.key][n]) for n in names}
        cells = []
        for n in names:
            cell = fmt(medians[n], m.unit)
            ok = len(results[m.key][n])
            if medians[n] is not None and ok < cfg.rounds:
                cell += f" ({ok}/{cfg.rounds})"
            cells.append(f"{cell:>16}")
        ratio = ratio_for(m, medians)
        if m.target is None:
            rtxt, ttxt, verdict = "", "", "(reported only)"
        elif ratio is None:
            rtxt, ttxt, verdict = "n/a", f">={m.target:.1f}x", ""
        else:
            rtxt, ttxt = f"{ratio:.2f}x", f">={m.target:.1f}x"
            verdict = "ok" if ratio >= m.target else "MISSED"
        print(f"{m.label:28}" + "".join(cells) + f"{rtxt:>10}{ttxt:>10}  {verdict}")
        summary[m.key] = {n: medians[n] for n in names}
        if m.target is not None:
            summary[f"{m.key}_ratio"] = None if ratio is None else round(ratio, 3)
            summary[f"{m.key}_target"] = m.target
    print()
    print("ratio: start/stop = fastest peer time / shoal time; throughput = shoal / best peer"
          " (>1 means shoal is better)")
    leaks = {n: c for n, c in cfg.leaks.items() if c}
    if leaks:
        print("processes still alive 2 s after a clean supervisor exit (killed by the harness): "
              + ", ".join(f"{n}={c}" for n, c in leaks.items()))
    summary["versions"] = versions
    summary["leaked_processes"] = dict(cfg.leaks)
    print("BENCH_SUMMARY " + json.dumps(summary, sort_keys=True))


# --------------------------------------------------------------------------
# Main


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    default_shoal = env("SHOAL_BIN") or os.path.join(
        env("CARGO_TARGET_DIR") or "target", "release", "shoal")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shoal", default=default_shoal)
    p.add_argument("--foreman", default=env("FOREMAN_BIN") or shutil.which("foreman"))
    p.add_argument("--honcho", default=env("HONCHO_BIN") or shutil.which("honcho"))
    p.add_argument("--tools", default=env("BENCH_TOOLS") or ",".join(TOOLS),
                   help="comma-separated subset of " + ",".join(TOOLS))
    p.add_argument("--only", default=env("BENCH_ONLY") or ",".join(m.key for m in MEASUREMENTS),
                   help="comma-separated subset of " + ",".join(m.key for m in MEASUREMENTS))
    p.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS") or 5))
    p.add_argument("--lines", type=int, default=int(env("BENCH_LINES") or 25000))
    p.add_argument("--idle-seconds", type=float, default=float(env("BENCH_IDLE_SECONDS") or 5))
    p.add_argument("--deadline", type=float, default=float(env("BENCH_DEADLINE") or 60))
    p.add_argument("--stall", type=float, default=float(env("BENCH_STALL") or 10),
                   help="throughput: fail a run after this many seconds without new output")
    p.add_argument("--port", type=int, default=int(env("BENCH_PORT") or 17000))
    return p.parse_args()


def select_tools(args: argparse.Namespace) -> list[Tool]:
    tools = []
    for name in [t.strip() for t in args.tools.split(",") if t.strip()]:
        if name not in TOOLS:
            sys.exit(f"unknown tool {name!r}; choose from {', '.join(TOOLS)}")
        binary = getattr(args, name)
        if name == "shoal":
            problem = shoal_usable(os.path.abspath(binary))
        elif not binary or not os.access(binary, os.X_OK):
            problem = f"{name} not found (set {name.upper()}_BIN or --{name})"
        else:
            problem = None
        if problem:
            print(f"skipping {name}: {problem}", file=sys.stderr)
            continue
        tools.append(Tool(name, os.path.abspath(binary)))
    if not tools:
        sys.exit("no tool to benchmark")
    return tools


def main() -> int:
    args = parse_args()
    become_subreaper()
    tools = select_tools(args)
    wanted = {k.strip() for k in args.only.split(",")}
    measurements = [m for m in MEASUREMENTS if m.key in wanted]
    versions = {t.name: t.version() for t in tools}
    kill_strays()
    workdir = tempfile.mkdtemp(prefix="shoal-bench-")
    cfg = Config(rounds=args.rounds, lines=args.lines, idle_seconds=args.idle_seconds,
                 deadline=args.deadline, stall=args.stall, port=args.port, workdir=workdir)
    results = {m.key: {t.name: [] for t in tools} for m in measurements}
    try:
        for rnd in range(cfg.rounds):
            k = rnd % len(tools)
            order = tools[k:] + tools[:k]
            for m in measurements:
                for tool in order:
                    try:
                        value = m.fn(cfg, tool)
                    except BenchFailure as exc:
                        print(f"[round {rnd + 1}/{cfg.rounds}] {m.key:10} {tool.name:8} FAILED: {exc}",
                              file=sys.stderr)
                        continue
                    results[m.key][tool.name].append(value)
                    print(f"[round {rnd + 1}/{cfg.rounds}] {m.key:10} {tool.name:8} {fmt(value, m.unit)}",
                          file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; reporting what was measured", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(cfg, tools, versions, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
