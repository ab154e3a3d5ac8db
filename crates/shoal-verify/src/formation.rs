//! One formation for one run, started with shoal's supervisor: every instance in a private
//! copy of the app ([`crate::copies`]), waited for through the supervisor's snapshots (never
//! with fixed sleeps), restarted on request with SIGTERM (a graceful stop, then a new start)
//! or SIGKILL (a crash, restarted at once) — the instance coming back while requests to the
//! others go on — and stopped at the end. The instances' output goes
//! to a [`Tail`], shown when something goes wrong.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_procfile::{InstanceName, Plan};
use shoal_supervisor::{
    Backoff, Handle, InstanceInfo, Log, LogWriter, Options, Outcome, RuntimeDir, Snapshot, State,
    Style, Supervisor, Watchdog,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::copies::PrivateCopies;
use crate::error::VerifyError;
use crate::schedule::Signal;

/// Lines kept for error messages.
const TAIL_LINES: usize = 400;
/// Crashes before ready after which an instance is taken to never come up.
const CRASHES_BEFORE_READY: u32 = 3;

/// The last lines the formations printed (and, with a log file, all of them there).
#[derive(Clone)]
pub(crate) struct Tail {
    inner: Arc<Mutex<TailInner>>,
}

struct TailInner {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    file: Option<std::fs::File>,
}

impl Tail {
    pub(crate) fn new(file: Option<PathBuf>) -> std::io::Result<Tail> {
        let file = file.map(std::fs::File::create).transpose()?;
        Ok(Tail {
            inner: Arc::new(Mutex::new(TailInner {
                lines: VecDeque::new(),
                partial: Vec::new(),
                file,
            })),
        })
    }

    /// The last lines about `name` (its own output and shoal's lines naming it).
    pub(crate) fn about(&self, name: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let needle = format!("{name} ");
        let stopping = format!("{name}:");
        let mut lines: Vec<String> = inner
            .lines
            .iter()
            .filter(|l| l.contains(&needle) || l.contains(&stopping) || l.ends_with(name))
            .cloned()
            .collect();
        let keep = lines.len().saturating_sub(20);
        lines.drain(..keep);
        lines
    }

    /// The last `count` lines.
    pub(crate) fn last(&self, count: usize) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .lines
            .iter()
            .rev()
            .take(count)
            .rev()
            .cloned()
            .collect()
    }
}

struct TailWriter(Tail);

impl Write for TailWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &mut inner.file {
            let _ = file.write_all(buf);
        }
        inner.partial.extend_from_slice(buf);
        while let Some(end) = inner.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = inner.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if inner.lines.len() == TAIL_LINES {
                inner.lines.pop_front();
            }
            inner.lines.push_back(text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What every formation of a verify run shares.
#[derive(Clone)]
pub(crate) struct Setup {
    pub(crate) runtime: RuntimeDir,
    pub(crate) copies: Arc<PrivateCopies>,
    pub(crate) watchdog: Option<Arc<Watchdog>>,
    pub(crate) grace: Duration,
    pub(crate) boot_timeout: Duration,
    pub(crate) health_path: Option<String>,
    pub(crate) tail: Tail,
}

/// A running formation.
pub(crate) struct Formation {
    plan: Arc<Plan>,
    /// Every instance of the plan.
    names: Vec<InstanceName>,
    handle: Handle,
    task: Option<JoinHandle<Outcome>>,
    writer: Option<LogWriter>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    setup: Setup,
    /// Restarts under way: each instance's way back into the formation.
    pending: HashMap<InstanceName, JoinHandle<Result<(), String>>>,
    /// Killed instances whose old pid must not count as up again.
    stale: HashMap<InstanceName, Option<u32>>,
}

impl Formation {
    /// Starts `plan` and waits until every instance is up (`web` ones ready).
    pub(crate) async fn start(plan: Arc<Plan>, setup: &Setup) -> Result<Formation, VerifyError> {
        let width = plan
            .instances()
            .iter()
            .map(|i| i.name.to_string().len())
            .max()
            .unwrap_or(6)
            .max("release.1".len());
        let (log, writer) = Log::start(
            Box::new(TailWriter(setup.tail.clone())),
            Style { color: false },
            width,
        );
        let options = Options {
            grace: setup.grace,
            watchdog: setup.watchdog.clone(),
            health_path: setup.health_path.clone(),
            boot_timeout: setup.boot_timeout,
            work_dirs: Some(setup.copies.clone()),
            // A killed instance comes back at once: the rounds wait for it. An instance that
            // keeps crashing is given up on after a few tries (see `up`), so no crash loop
            // spins for long.
            backoff: Backoff {
                initial: Duration::from_millis(10),
                ..Backoff::default()
            },
            ..Options::default()
        };
        let (handle, task) = Supervisor::start(plan.clone(), setup.runtime.clone(), log, options);
        let snapshots = handle.watch();
        let names: Vec<InstanceName> = plan.instances().into_iter().map(|i| i.name).collect();
        let mut formation = Formation {
            plan,
            names: names.clone(),
            handle,
            task: Some(task),
            writer: Some(writer),
            snapshots,
            setup: setup.clone(),
            pending: HashMap::new(),
            stale: HashMap::new(),
        };
        for name in &names {
            formation.up(name, None).await?;
        }
        Ok(formation)
    }

    /// Every instance of the formation.
    pub(crate) fn names(&self) -> &[InstanceName] {
        &self.names
    }

    /// The port of `web.N`.
    pub(crate) fn web_port(&self, index: u32) -> u16 {
        let web = self
            .plan
            .process_type(shoal_procfile::plan::WEB)
            .map_or(0, |t| t.first_port);
        web + (index - 1) as u16
    }

    /// Waits until `name` is up (ready, for `web`) — after its restart, if one is under way —
    /// and returns how it is.
    pub(crate) async fn ready(&mut self, name: &InstanceName) -> Result<InstanceInfo, VerifyError> {
        if let Some(task) = self.pending.remove(name) {
            let outcome = task
                .await
                .unwrap_or_else(|err| Err(format!("the restart task failed: {err}")));
            outcome.map_err(|message| VerifyError::App {
                message,
                output: self.setup.tail.about(&name.to_string()),
            })?;
        }
        let stale = self.stale.remove(name).flatten();
        self.up(name, stale).await
    }

    /// Restarts `name` with `signal`. The signal is sent before this returns; the instance
    /// comes back in the background (requests to other instances go on meanwhile), and
    /// [`Formation::ready`] waits for it.
    pub(crate) async fn restart(
        &mut self,
        name: &InstanceName,
        signal: Signal,
    ) -> Result<(), VerifyError> {
        // An earlier restart of the same instance finishes first.
        let before = self.ready(name).await?.pid;
        let failed = |action: &str, why: String| VerifyError::App {
            message: format!("cannot {action} `{name}`: {why}"),
            output: self.setup.tail.about(&name.to_string()),
        };
        match signal {
            Signal::Kill => {
                // The supervisor restarts a killed instance by itself, at once.
                self.handle
                    .chaos_kill(name)
                    .await
                    .map_err(|why| failed("kill", why.to_string()))?;
                self.stale.insert(name.clone(), before);
            }
            Signal::Term => {
                self.handle
                    .retire(name)
                    .await
                    .map_err(|why| failed("stop", why.to_string()))?;
                // Once it has exited, it starts again under its own name (not at the lowest
                // free index: another instance may be restarting at the same moment).
                let handle = self.handle.clone();
                let mut snapshots = self.handle.watch();
                let limit = self.setup.grace + Duration::from_secs(10);
                let restarting = name.clone();
                let task = tokio::spawn(async move {
                    let name = restarting;
                    let gone = tokio::time::timeout(limit, async {
                        while snapshots
                            .borrow_and_update()
                            .instances
                            .iter()
                            .any(|i| i.name == name)
                        {
                            if snapshots.changed().await.is_err() {
                                break;
                            }
                        }
                    });
                    gone.await
                        .map_err(|_| format!("`{name}` did not stop after SIGTERM and SIGKILL"))?;
                    handle
                        .add_as(&name)
                        .await
                        .map_err(|why| format!("cannot start `{name}` again: {why}"))?;
                    Ok(())
                });
                self.pending.insert(name.clone(), task);
            }
        }
        Ok(())
    }

    /// Stops the formation (SIGTERM, SIGKILL after the grace period) and waits for the end.
    pub(crate) async fn stop(mut self) {
        for (_, task) in self.pending.drain() {
            task.abort();
        }
        self.handle.stop();
        if let Some(task) = self.task.take() {
            let limit = self.setup.grace + Duration::from_secs(10);
            if tokio::time::timeout(limit, task).await.is_err() {
                self.handle.kill();
            }
        }
        if let Some(writer) = self.writer.take() {
            writer.finish_within(Duration::from_secs(5));
        }
    }

    fn snapshot_of(&self, name: &InstanceName) -> Option<InstanceInfo> {
        self.snapshots
            .borrow()
            .instances
            .iter()
            .find(|i| &i.name == name)
            .cloned()
    }

    /// Waits until `name` is up with a pid other than `not_pid`.
    async fn up(
        &mut self,
        name: &InstanceName,
        not_pid: Option<u32>,
    ) -> Result<InstanceInfo, VerifyError> {
        let web = name.kind == shoal_procfile::plan::WEB;
        // A `release` runs first and may take a while; the boot timeout starts for each
        // instance once it exists.
        let deadline =
            tokio::time::Instant::now() + self.setup.boot_timeout + Duration::from_secs(2);
        let mut first_seen: Option<u32> = None;
        loop {
            let info = self.snapshot_of(name);
            if let Some(info) = &info {
                let up = if web {
                    info.state == State::Ready
                } else {
                    matches!(info.state, State::Running | State::Ready)
                };
                if up && info.pid.is_some() && info.pid != not_pid {
                    return Ok(info.clone());
                }
                let restarts = *first_seen.get_or_insert(info.restarts);
                if info.restarts >= restarts + CRASHES_BEFORE_READY {
                    let last = info
                        .last_exit
                        .as_ref()
                        .map_or(String::new(), |e| format!(" (last: {e})"));
                    return Err(VerifyError::App {
                        message: format!(
                            "`{name}` exited {CRASHES_BEFORE_READY} times without becoming ready{last}"
                        ),
                        output: self.setup.tail.about(&name.to_string()),
                    });
                }
            }
            if let Some(task) = &self.task
                && task.is_finished()
            {
                let task = self.task.take().expect("checked above");
                let outcome = task.await.ok();
                let why = match outcome {
                    Some(Outcome::ReleaseFailed { exit }) => format!("`release` failed ({exit})"),
                    Some(Outcome::InstanceExited { name, exit }) => format!("`{name}` {exit}"),
                    _ => "the formation stopped".to_owned(),
                };
                return Err(VerifyError::App {
                    message: format!("the formation stopped before `{name}` was up: {why}"),
                    output: self.setup.tail.last(30),
                });
            }
            let wait = tokio::time::timeout_at(deadline, self.snapshots.changed());
            match wait.await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    // The supervisor is gone; the check above reports why.
                    if self.task.is_none() {
                        return Err(VerifyError::App {
                            message: format!("the formation stopped before `{name}` was up"),
                            output: self.setup.tail.last(30),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    let what = if web {
                        let port = info.map_or(0, |i| i.port);
                        format!(
                            "`{name}` did not become ready within {} s (nothing of its own accepted connections on port {port}{})",
                            self.setup.boot_timeout.as_secs_f64(),
                            self.setup
                                .health_path
                                .as_ref()
                                .map(|p| format!(", or `{p}` did not answer 2xx"))
                                .unwrap_or_default()
                        )
                    } else {
                        format!(
                            "`{name}` did not start within {} s",
                            self.setup.boot_timeout.as_secs_f64()
                        )
                    };
                    return Err(VerifyError::App {
                        message: what,
                        output: self.setup.tail.about(&name.to_string()),
                    });
                }
            }
        }
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        // Interrupted or failed half-way: no instance may outlive verify.
        if self.task.as_ref().is_some_and(|t| !t.is_finished()) {
            self.handle.kill();
        }
    }
}
