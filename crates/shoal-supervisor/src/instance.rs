//! The life of one instance: a fresh scratch directory, the spawn, its output, the readiness
//! probe, the exit, and an empty process group afterwards. The task reports to the controller
//! and decides nothing about restarts or stops.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shoal_procfile::memory::Size;
use shoal_procfile::{InstanceName, Plan};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::exit::Exit;
use crate::memory::{Cgroup, CgroupRoot, MemoryWatch};
use crate::output::Log;
use crate::ports::{self, Holder, Reach};
use crate::process::{self, InstanceProcess, Launch};
use crate::reader;
use crate::scratch::RuntimeDir;

/// What the controller tells running instance tasks about the formation as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopState {
    /// Running normally: when a main process exits, whatever it left behind is killed at once.
    Running,
    /// Stopping with a grace period: after the main process exits, wait for the rest of its
    /// process group to finish.
    Stopping,
    /// The grace period is over: kill whatever is left.
    Killing,
}

/// What an instance task reports.
#[derive(Debug)]
pub(crate) enum Event {
    Started {
        slot: usize,
        generation: u64,
        pid: u32,
    },
    Ready {
        slot: usize,
        generation: u64,
        /// The loopback address where the instance's own listener was verified to serve.
        addr: SocketAddr,
    },
    Exited {
        slot: usize,
        generation: u64,
        exit: Exit,
        ran: Duration,
        /// Another process held the instance's port before it started, and still does now that
        /// it exited without ever becoming ready: most likely why it exited.
        port_taken: Option<Holder>,
        /// The kernel's OOM killer killed a process of the instance in its memory cgroup.
        oom: bool,
        /// Answered once the controller no longer refers to the process.
        noted: oneshot::Sender<()>,
    },
    /// The instance used twice its memory limit (sampled), or the kernel's OOM killer ended a
    /// process of it while its main process lives on: it is to be restarted.
    OverMemory {
        slot: usize,
        generation: u64,
        used: u64,
    },
    /// A web instance drained before its memory restart has no request left in flight (or
    /// the grace period is over): it is stopped now.
    DrainedForMemory {
        slot: usize,
        generation: u64,
    },
    /// The instance was not ready within its boot timeout; the task kills it.
    NotReady {
        slot: usize,
        generation: u64,
    },
    RestartDue {
        slot: usize,
        generation: u64,
    },
    /// The grace period of an instance stopped on its own is over.
    StopDue {
        slot: usize,
        generation: u64,
    },
}

/// What instance tasks share.
pub(crate) struct Context {
    pub(crate) plan: Arc<Plan>,
    pub(crate) runtime: RuntimeDir,
    pub(crate) log: Log,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) stop: watch::Receiver<StopState>,
    pub(crate) watchdog: Option<Arc<crate::Watchdog>>,
    pub(crate) health_path: Option<String>,
    pub(crate) boot_timeout: Duration,
    pub(crate) work_dirs: Option<Arc<dyn crate::WorkDirs>>,
    /// The formation's memory cgroup, when instances have memory limits and the kernel can
    /// enforce them for shoal.
    pub(crate) cgroups: Option<Arc<CgroupRoot>>,
}

/// One start of one instance.
#[derive(Debug, Clone)]
pub(crate) struct Start {
    pub(crate) slot: usize,
    pub(crate) generation: u64,
    pub(crate) name: InstanceName,
    pub(crate) command: String,
    pub(crate) port: u16,
    /// Position of the process type, for the log colour.
    pub(crate) kind_index: usize,
    /// Whether to report readiness once the port accepts connections.
    pub(crate) probe: bool,
    /// The most memory it may use, in bytes (`--memory-limit`).
    pub(crate) memory_limit: Option<u64>,
}

/// Longest wait for the output of an exited instance: a process that escaped the group may
/// hold its pipes open for ever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the instance once and reports `Started`, `Ready` and finally `Exited`. The exited main
/// process is reaped only once the controller has taken note (and so will not signal its
/// process group any more): until then its pid cannot be reused.
pub(crate) async fn run(context: Arc<Context>, start: Start) {
    let began = Instant::now();
    let cgroup = memory_cgroup(&context, &start).map(Arc::new);
    let (exit, leader, port_taken) = run_once(&context, &start, cgroup.clone()).await;
    // Whatever is left in the cgroup (a process that left the group) goes too.
    let oom = cgroup.as_ref().is_some_and(|cgroup| {
        cgroup.kill_all();
        cgroup.oom_kills() > 0
    });
    if let Some(work_dirs) = &context.work_dirs {
        work_dirs.exited(&start.name, &context.runtime.scratch(&start.name));
    }
    let _ = context.runtime.remove_scratch(&start.name);
    let (noted, taken_note) = oneshot::channel();
    let _ = context.events.send(Event::Exited {
        slot: start.slot,
        generation: start.generation,
        exit,
        ran: began.elapsed(),
        port_taken,
        oom,
        noted,
    });
    let _ = taken_note.await;
    if let Some(leader) = leader {
        leader.reap();
    }
    if let Some(cgroup) = cgroup {
        let _ = tokio::task::spawn_blocking(move || cgroup.remove()).await;
    }
}

/// A memory cgroup for this run, when it has a limit and the kernel can enforce it; its hard
/// limit is [`crate::memory::hard_limit`].
fn memory_cgroup(context: &Context, start: &Start) -> Option<Cgroup> {
    let limit = start.memory_limit?;
    let root = context.cgroups.as_ref()?;
    match root.instance(&start.name.to_string(), limit) {
        Ok(cgroup) => Some(cgroup),
        Err(err) => {
            context.log.system(format!(
                "cannot create a memory cgroup for {} in `{}` ({err}); sampling its resident memory instead",
                start.name,
                root.path().display()
            ));
            None
        }
    }
}

/// Once a second while the instance runs (and only when it has a memory limit): says when it
/// goes over its limit (once per crossing), and asks the controller to restart it at twice
/// the limit (the working set of its cgroup, or the resident memory of its process group) or
/// when the OOM killer ended one of its processes while its main process lives on.
async fn watch_memory(
    context: Arc<Context>,
    start: Start,
    pgid: u32,
    limit: u64,
    cgroup: Option<Arc<Cgroup>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = MemoryWatch::new(limit);
    loop {
        tick.tick().await;
        let cgroup = cgroup.clone();
        let reading = tokio::task::spawn_blocking(move || match &cgroup {
            Some(cgroup) => (cgroup.working_set(), cgroup.oom_kills()),
            // A group `/proc` does not show (or no `/proc`) gives no reading, not 0.
            None => (
                process::usage_by_group()
                    .get(&pgid)
                    .map(|usage| usage.resident_bytes),
                0,
            ),
        })
        .await;
        let Ok((Some(used), oom_kills)) = reading else {
            continue;
        };
        let (warn, restart) = watch.observe(used, oom_kills);
        if warn {
            context.log.system(format!(
                "{} is over its memory limit: {} of {}",
                start.name,
                Size(used),
                Size(limit)
            ));
        }
        if restart {
            let _ = context.events.send(Event::OverMemory {
                slot: start.slot,
                generation: start.generation,
                used,
            });
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_once(
    context: &Arc<Context>,
    start: &Start,
    cgroup: Option<Arc<Cgroup>>,
) -> (Exit, Option<InstanceProcess>, Option<Holder>) {
    let scratch = match context.runtime.fresh_scratch(&start.name) {
        Ok(path) => path,
        Err(err) => return (Exit::SpawnFailed(error_chain(&err)), None, None),
    };
    let env = context.plan.instance_env(&start.name, start.port, &scratch);
    let dir = match &context.work_dirs {
        None => context.plan.app_dir.clone(),
        Some(work_dirs) => match work_dirs.prepare(&start.name) {
            Ok(dir) => dir,
            Err(err) => {
                let exit = Exit::SpawnFailed(format!(
                    "cannot prepare the working directory of {}: {}",
                    start.name,
                    error_chain(&err)
                ));
                return (exit, None, None);
            }
        },
    };
    // Looked at before the spawn, while nothing of the instance can hold the port: whoever
    // holds it now is another process, whose port the instance will fail to listen on. A
    // bind is one system call; who holds the port (every process's descriptors) is only looked
    // up if the instance then exits without becoming ready.
    let taken_before = start.probe && ports::in_use(start.port);
    let procs = match cgroup.as_deref().map(Cgroup::procs).transpose() {
        Ok(procs) => procs,
        Err(err) => {
            let exit = Exit::SpawnFailed(format!(
                "cannot enter the memory cgroup of {}: {err}",
                start.name
            ));
            return (exit, None, None);
        }
    };
    let launch = Launch {
        command: &start.command,
        dir: &dir,
        env: &env,
        foreground: false,
        cgroup_procs: procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
    };
    let spawned = InstanceProcess::spawn(&launch).await;
    // The child has written itself into the cgroup (or failed to start) by now.
    drop(procs);
    let mut leader = match spawned {
        Ok(leader) => leader,
        Err(err) => {
            let exit = Exit::SpawnFailed(format!(
                "cannot run `/bin/sh` in `{}`: {}",
                launch.dir.display(),
                error_chain(&err)
            ));
            return (exit, None, None);
        }
    };
    let pid = leader.pid;
    if let Some(watchdog) = &context.watchdog {
        watchdog.watch(pid);
    }
    let _ = context.events.send(Event::Started {
        slot: start.slot,
        generation: start.generation,
        pid,
    });
    let watching = start.memory_limit.map(|limit| {
        AbortOnDrop(tokio::spawn(watch_memory(
            context.clone(),
            start.clone(),
            pid,
            limit,
            cgroup,
        )))
    });

    let source = context.log.source(start.name.to_string(), start.kind_index);
    let mut readers = JoinSet::new();
    if let Some(stdout) = leader.stdout.take() {
        readers.spawn(reader::pump(stdout, source.clone(), context.log.clone()));
    }
    if let Some(stderr) = leader.stderr.take() {
        readers.spawn(reader::pump(stderr, source, context.log.clone()));
    }

    // The exit future borrows the leader; it is done with it before the leader is handed back
    // for reaping.
    let mut became_ready = false;
    let status = {
        let wait = leader.exited();
        tokio::pin!(wait);
        let early = if start.probe {
            tokio::select! {
                status = &mut wait => Some(status),
                ready = wait_until_ready(start.port, pid, context, &start.name) => {
                    if let Some(addr) = ready {
                        became_ready = true;
                        let _ = context.events.send(Event::Ready { slot: start.slot, generation: start.generation, addr });
                    } else {
                        let _ = context.events.send(Event::NotReady { slot: start.slot, generation: start.generation });
                        context.log.system(format!(
                            // What follows (a restart, or giving up a replacement) is the
                            // controller's to say.
                            "{} is not ready after {} s (`--boot-timeout`); killing it",
                            start.name,
                            context.boot_timeout.as_secs_f64()
                        ));
                        let _ = process::signal_group(pid, Signal::SIGKILL);
                    }
                    None
                }
            }
        } else {
            None
        };
        match early {
            Some(status) => status,
            None => wait.await,
        }
    };
    let exit = status.unwrap_or_else(|err| Exit::SpawnFailed(error_chain(&err)));
    drop(watching);

    clear_group(pid, context.stop.clone()).await;
    if let Some(watchdog) = &context.watchdog {
        watchdog.forget(pid);
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        readers.abort_all();
    }
    // The group is empty now, so whoever holds the port is not the instance.
    let port_taken = if taken_before && !became_ready {
        let port = start.port;
        tokio::task::spawn_blocking(move || ports::holder(port))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    (exit, Some(leader), port_taken)
}

/// After the main process `pgid` exited: kill what it left in its group at once, or, while
/// the formation stops, give it the rest of the grace period.
async fn clear_group(pgid: u32, mut stop: watch::Receiver<StopState>) {
    loop {
        let state = *stop.borrow_and_update();
        if state != StopState::Stopping {
            let _ = process::signal_group(pgid, Signal::SIGKILL);
            return;
        }
        if !process::group_is_alive(pgid) {
            return;
        }
        // Polled only while a stop is in progress, never while the formation runs.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Waits until the instance (a process of group `pgid`) is ready: its own listener serves
/// `port` at a loopback address (see [`ports`]), accepts a connection there and, with a
/// health path, answers it with 2xx. Returns that address, the only one the router will
/// connect to, or `None` when the boot timeout passes first. Probes often while an app
/// usually boots, then less often, so an instance that is slow to boot costs next to nothing.
async fn wait_until_ready(
    port: u16,
    pgid: u32,
    context: &Context,
    name: &InstanceName,
) -> Option<SocketAddr> {
    let deadline = Instant::now() + context.boot_timeout;
    let mut delay = Duration::from_millis(10);
    let mut warned = false;
    while Instant::now() < deadline {
        match probe(port, pgid, context).await {
            Probe::Ready(addr) => return Some(addr),
            Probe::NotYet => {}
            Probe::Blocked(reach) if !std::mem::replace(&mut warned, true) => {
                // Who holds the port is looked up once: it means reading every process's
                // file descriptors.
                let message = match reach {
                    Reach::NotServed => format!(
                        "{name} listens on port {port}, but not at 127.0.0.1 or [::1] alone (at another address, or beside another process's listener); it is not ready until it does"
                    ),
                    _ => format!(
                        "{}; {name} is not ready until it listens there itself",
                        ports::holder(port).map_or_else(
                            || format!("port {port} is in use by another process"),
                            |holder| holder.to_string(),
                        )
                    ),
                };
                context.log.system(message);
            }
            Probe::Blocked(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
    None
}

/// What one look at an instance's port found.
enum Probe {
    Ready(SocketAddr),
    NotYet,
    /// Something other than the instance is in the way ([`Reach::Foreign`] or
    /// [`Reach::NotServed`]).
    Blocked(Reach),
}

async fn probe(port: u16, pgid: u32, context: &Context) -> Probe {
    // Reading the kernel's socket tables costs in proportion to every socket on the machine
    // (tenths of a second with tens of thousands): booting instances share one recent
    // reading, made off the runtime's threads. Nothing is connected to before the reading
    // shows the instance's own listener: the port's other listeners may be anybody's.
    let Some(listeners) = socket_tables(port, pgid, false).await else {
        return probe_unverified(port, context).await;
    };
    let addr = match ports::reach(&listeners, port) {
        Reach::Own(addr) => addr,
        Reach::Nothing => return Probe::NotYet,
        blocked @ (Reach::Foreign | Reach::NotServed) => return Probe::Blocked(blocked),
    };
    let Ok(stream) = TcpStream::connect(addr).await else {
        return Probe::NotYet;
    };
    // The listener that took this connection must still be the instance's: listeners may have
    // come or gone since they were read.
    let served = socket_tables(port, pgid, true)
        .await
        .is_some_and(|now| ports::serves(&now, addr));
    if !served {
        return Probe::NotYet;
    }
    healthy(stream, addr, context).await
}

/// The listeners on `port` and whether each is group `pgid`'s, read on a blocking thread:
/// `fresh`, or from a reading shared with other probes (see [`ports::RECENT`]).
async fn socket_tables(port: u16, pgid: u32, fresh: bool) -> Option<Vec<ports::Listener>> {
    tokio::task::spawn_blocking(move || {
        if fresh {
            ports::listeners(port, pgid)
        } else {
            ports::recent_listeners(port, pgid)
        }
    })
    .await
    .ok()
    .flatten()
}

/// Without `/proc` nobody can tell whose listener answers: the first loopback address that
/// accepts a connection.
async fn probe_unverified(port: u16, context: &Context) -> Probe {
    for addr in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    ] {
        if let Ok(stream) = TcpStream::connect(addr).await {
            return healthy(stream, addr, context).await;
        }
    }
    Probe::NotYet
}

/// Ready at `addr` once the health path, if any, answers 2xx over `stream`.
async fn healthy(stream: TcpStream, addr: SocketAddr, context: &Context) -> Probe {
    match &context.health_path {
        None => Probe::Ready(addr),
        Some(path) if health_check(stream, addr, path).await == Some(true) => Probe::Ready(addr),
        Some(_) => Probe::NotYet,
    }
}

/// `GET path` over `stream`; whether the status is 2xx (`None` when there is no valid answer
/// within a few seconds).
async fn health_check(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Option<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: shoal-probe\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(64);
        let mut byte = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let n = stream.read(&mut byte).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&byte[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..300).contains(&status))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// An error and its causes, joined with `: `.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
