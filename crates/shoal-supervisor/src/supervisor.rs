//! The controller: the one task that owns the instance table. It starts instances, restarts
//! them with backoff, runs `release` first, stops the formation with a grace period, and
//! publishes a [`Snapshot`] after every change for whoever watches (the router, `shoal ps`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shoal_procfile::{InstanceName, Plan};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::cause::Cause;
use crate::error::Refused;
use crate::exit::Exit;
use crate::handle::{Command, Handle, IfItFails, Reply};
use crate::instance::{self, Context, Event, Start, StopState};
use crate::life::{Effect, Kill, Life};
use crate::memory::CgroupRoot;
use crate::output::Log;
use crate::ports::Holder;
use crate::process;
use crate::scratch::RuntimeDir;
use crate::snapshot::{InstanceInfo, Outcome, Phase, Snapshot, State};
use shoal_procfile::memory::Size;

/// How the formation is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long instances get between SIGTERM and SIGKILL (`--timeout`).
    pub grace: Duration,
    /// Restart instances that exit (`false` is `--no-restart`: the first exit stops everything).
    pub restart: bool,
    /// Delays between restarts.
    pub backoff: Backoff,
    /// The process type whose instances are probed for readiness (their port accepts
    /// connections); others are `running` as soon as they started.
    pub probe_type: Option<String>,
    /// The guard that kills the instances' process groups if shoal is killed.
    pub watchdog: Option<Arc<crate::Watchdog>>,
    /// A path that must answer 2xx (to `GET`) before a probed instance is ready, on top of its
    /// port accepting connections.
    pub health_path: Option<String>,
    /// How long a probed instance may take to become ready; then it is killed and restarted.
    pub boot_timeout: Duration,
    /// Gives each start of an instance its own working directory; `None` runs every instance
    /// in the plan's app directory.
    pub work_dirs: Option<Arc<dyn crate::WorkDirs>>,
    /// Waits until the router has no request in flight on an instance: a web instance is
    /// drained that way before a memory restart. Without it, it is stopped at once.
    pub until_idle: Option<Arc<dyn UntilIdle>>,
}

/// Whoever routes requests to instances, asked when one of them has no request in flight
/// any more (the supervisor never reaches into the router itself).
pub trait UntilIdle: Send + Sync + std::fmt::Debug {
    /// Resolves once instance `name` has no request in flight.
    fn until_idle(
        &self,
        name: &InstanceName,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: Duration::from_secs(10),
            restart: true,
            backoff: Backoff::default(),
            probe_type: Some(shoal_procfile::plan::WEB.into()),
            watchdog: None,
            health_path: None,
            boot_timeout: Duration::from_secs(60),
            work_dirs: None,
            until_idle: None,
        }
    }
}

/// The formation's memory cgroup when some type has a memory limit and the kernel can enforce
/// it for shoal; says in the log how the limits are enforced.
fn memory_enforcement(plan: &Plan, log: &Log) -> Option<Arc<CgroupRoot>> {
    if plan.types.iter().all(|t| t.memory_limit.is_none()) {
        return None;
    }
    let root = CgroupRoot::create().map(Arc::new);
    log.system(match &root {
        Some(root) => format!(
            "memory limits: memory cgroups read once a second; a warning above the limit, a restart at twice, and the kernel ends an instance that grows faster a quarter of the limit later (memory cgroup `{}`)",
            root.path().display()
        ),
        None => "memory limits: no memory cgroup shoal may create, so resident memory is sampled once a second; a warning above the limit, a restart at twice".to_owned(),
    });
    root
}

/// Starts formations.
pub struct Supervisor;

impl Supervisor {
    /// Starts `plan`'s formation (after its `release`, if any). The returned task ends, with
    /// the reason, once every instance has exited.
    pub fn start(
        plan: Arc<Plan>,
        runtime: RuntimeDir,
        log: Log,
        options: Options,
    ) -> (Handle, JoinHandle<Outcome>) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(StopState::Running);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (phase_tx, phase_rx) = watch::channel(Phase::Starting);
        let cgroups = memory_enforcement(&plan, &log);
        let context = Arc::new(Context {
            plan: plan.clone(),
            runtime,
            log,
            events: events_tx,
            stop: stop_rx,
            watchdog: options.watchdog.clone(),
            health_path: options.health_path.clone(),
            boot_timeout: options.boot_timeout,
            work_dirs: options.work_dirs.clone(),
            cgroups,
        });
        let controller = Controller {
            slots: Vec::new(),
            release: None,
            context,
            options,
            events,
            commands,
            stop: stop_tx,
            snapshot: snapshot_tx,
            published_phase: phase_tx,
            phase: Phase::Starting,
            outcome: None,
            kill_at: None,
        };
        let task = tokio::spawn(controller.run());
        (
            Handle {
                commands: commands_tx,
                snapshot: snapshot_rx,
                phase: phase_rx,
            },
            task,
        )
    }
}

struct Slot {
    name: InstanceName,
    command: String,
    port: u16,
    kind_index: usize,
    probe: bool,
    /// Where it is in its life: the one place that says so.
    life: Life,
    /// Counts starts, so that events from an earlier run are recognised and ignored.
    starts: u64,
    restarts: u32,
    /// Restarts by the kind of their cause (in the order of [`Cause::LABELS`]).
    restarts_by_cause: [u32; Cause::LABELS.len()],
    crashes_in_a_row: u32,
    last_exit: Option<Exit>,
    /// What the previous run's end is put down to.
    last_cause: Option<Cause>,
    /// Someone waits until this start is up ([`Handle::boot`]), and what becomes of it if it
    /// fails first.
    waiter: Option<(Reply<InstanceName>, IfItFails)>,
}

/// How a run ended, as its instance task reported it.
struct RunEnd {
    exit: Exit,
    ran: Duration,
    /// Another process held its port since before it started (see [`Event::Exited`]).
    port_taken: Option<Holder>,
    /// The kernel's OOM killer ended a process of it in its memory cgroup.
    oom: bool,
}

struct Controller {
    slots: Vec<Slot>,
    /// Index of the `release` slot, while it matters.
    release: Option<usize>,
    context: Arc<Context>,
    options: Options,
    events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    stop: watch::Sender<StopState>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    published_phase: watch::Sender<Phase>,
    phase: Phase,
    outcome: Option<Outcome>,
    kill_at: Option<tokio::time::Instant>,
}

impl Controller {
    async fn run(mut self) -> Outcome {
        let plan = self.context.plan.clone();
        match &plan.release {
            Some(release) => {
                let index = self.add_slot(
                    InstanceName::new(shoal_procfile::plan::RELEASE, 1),
                    release.command.clone(),
                    release.port,
                    plan.types.len(),
                    false,
                );
                self.release = Some(index);
                self.log(format!("running release: {}", release.command));
                self.start_slot(index);
            }
            None => self.start_formation(),
        }
        self.publish();

        let mut commands_open = true;
        while !(self.phase == Phase::Stopping && self.slots.iter().all(|s| !s.life.is_active())) {
            let kill_at = self.kill_at;
            let grace_over = async move {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(event) = self.events.recv() => self.on_event(event),
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => self.on_command(command),
                    None => commands_open = false,
                },
                () = grace_over => {
                    let reason = format!(" (still running after {})", describe(self.options.grace));
                    self.kill_all(&reason);
                }
            }
            self.publish();
        }
        self.outcome.take().unwrap_or(Outcome::Stopped)
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Stop => self.begin_stop(Outcome::Stopped),
            Command::Kill => self.kill_all(""),
            Command::ChaosKill { name, reply } => {
                let _ = reply.send(self.chaos_kill(&name));
            }
            // Publish before answering: whoever asked looks at the snapshot next.
            Command::Add {
                kind,
                index,
                until_up,
                reply,
            } => {
                let result = self.add(&kind, index);
                self.publish();
                match (result, until_up) {
                    (Ok(slot), Some(if_it_fails)) => {
                        self.slots[slot].waiter = Some((reply, if_it_fails));
                    }
                    (result, _) => {
                        let _ = reply.send(result.map(|slot| self.slots[slot].name.clone()));
                    }
                }
            }
            Command::Drain { name, reply } => {
                let result = self.drain(&name);
                self.publish();
                let _ = reply.send(result);
            }
            Command::Retire { name, reply } => {
                let result = self.retire(&name);
                self.publish();
                let _ = reply.send(result);
            }
        }
    }

    fn add_slot(
        &mut self,
        name: InstanceName,
        command: String,
        port: u16,
        kind_index: usize,
        probe: bool,
    ) -> usize {
        self.slots.push(Slot {
            name,
            command,
            port,
            kind_index,
            probe,
            life: Life::Down,
            starts: 0,
            restarts: 0,
            restarts_by_cause: [0; Cause::LABELS.len()],
            crashes_in_a_row: 0,
            last_exit: None,
            last_cause: None,
            waiter: None,
        });
        self.slots.len() - 1
    }

    fn start_formation(&mut self) {
        self.phase = Phase::Running;
        let plan = self.context.plan.clone();
        let instances = plan.instances();
        if instances.is_empty() {
            self.log("no instances to run: every process type is scaled to 0");
        }
        for instance in instances {
            let kind_index = plan
                .types
                .iter()
                .position(|t| t.name == instance.name.kind)
                .unwrap_or(0);
            let probe = self.options.probe_type.as_deref() == Some(instance.name.kind.as_str());
            let index = self.add_slot(
                instance.name,
                instance.command,
                instance.port,
                kind_index,
                probe,
            );
            self.start_slot(index);
        }
    }

    fn start_slot(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        slot.starts += 1;
        slot.life.start(slot.starts, Instant::now());
        let start = Start {
            slot: index,
            generation: slot.starts,
            name: slot.name.clone(),
            command: slot.command.clone(),
            port: slot.port,
            kind_index: slot.kind_index,
            probe: slot.probe,
            memory_limit: self.memory_limit(index),
        };
        tokio::spawn(instance::run(self.context.clone(), start));
    }

    /// The memory limit of `index`'s type, if it has one.
    fn memory_limit(&self, index: usize) -> Option<u64> {
        let plan = &self.context.plan;
        plan.types
            .get(self.slots[index].kind_index)
            .and_then(|t| t.memory_limit)
    }

    /// `index`'s instance used twice its memory limit, or the kernel's OOM killer ended one of
    /// its processes: a web instance is drained first when another one is ready, then it is
    /// stopped and restarted.
    fn over_memory(&mut self, index: usize, generation: u64, used: u64) {
        let s = &self.slots[index];
        if self.phase != Phase::Running
            || s.life.run_of(generation).is_none()
            || matches!(s.life, Life::Stopping { .. })
        {
            return;
        }
        let limit = self.memory_limit(index).unwrap_or(0);
        let name = s.name.clone();
        self.log(if used >= crate::memory::restart_point(limit) {
            format!(
                "{name} uses {}, twice its memory limit of {} or more: restarting it",
                Size(used),
                Size(limit)
            )
        } else {
            format!(
                "{}: restarting it",
                crate::memory::oom_killed(&format!("a process of {name}"), limit)
            )
        });
        let another_ready = self
            .slots
            .iter()
            .any(|o| o.name.kind == name.kind && o.name != name && o.life.state() == State::Ready);
        match &self.options.until_idle {
            Some(until_idle) if s.life.state() == State::Ready && another_ready => {
                let idle = until_idle.until_idle(&name);
                self.slots[index].life.drain();
                self.log(format!("{name} is draining: no new requests go to it"));
                let (grace, events) = (self.options.grace, self.context.events.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(grace, idle).await;
                    let _ = events.send(Event::DrainedForMemory {
                        slot: index,
                        generation,
                    });
                });
            }
            _ => self.stop_for_memory(index, generation),
        }
    }

    /// Stops `index`'s run `generation` (SIGTERM, SIGKILL after the grace period) so that it
    /// restarts, its cause the memory limit.
    fn stop_for_memory(&mut self, index: usize, generation: u64) {
        let s = &mut self.slots[index];
        if s.life.run_of(generation).is_none() || matches!(s.life, Life::Stopping { .. }) {
            return;
        }
        let Some(effects) = s.life.stop_to_restart() else {
            return;
        };
        let name = s.name.clone();
        self.perform(index, effects);
        self.stop_due_after_grace(index, generation, &name);
    }

    /// Logs the stop of `name` and sends SIGKILL to it after the grace period if it has not
    /// exited by then.
    fn stop_due_after_grace(&self, slot: usize, generation: u64, name: &InstanceName) {
        let grace = self.options.grace;
        self.log(format!(
            "stopping {name}: SIGTERM, then SIGKILL after {}",
            describe(grace)
        ));
        let events = self.context.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = events.send(Event::StopDue { slot, generation });
        });
    }

    /// Performs what a transition of `index`'s life asked for.
    fn perform(&mut self, index: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Signal(pid, signal) => {
                    let _ = process::signal_group(pid, signal);
                }
                Effect::Up => self.answer_up(index),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Started {
                slot,
                generation,
                pid,
            } => {
                let s = &mut self.slots[slot];
                if s.life.run_of(generation).is_none() {
                    return;
                }
                let message = format!("{} started (pid {pid}, port {})", s.name, s.port);
                self.log(message);
                let formation = *self.stop.borrow();
                let s = &mut self.slots[slot];
                let effects = s.life.started(generation, pid, s.probe, formation);
                self.perform(slot, effects);
            }
            Event::Ready {
                slot,
                generation,
                addr,
            } => {
                let s = &mut self.slots[slot];
                if !s.life.ready(generation, addr) {
                    return;
                }
                let mut message = format!("{} is ready on port {}", s.name, s.port);
                if addr.ip() != std::net::Ipv4Addr::LOCALHOST {
                    message.push_str(&format!(" at {addr}"));
                }
                self.log(message);
                self.answer_up(slot);
            }
            Event::OverMemory {
                slot,
                generation,
                used,
            } => self.over_memory(slot, generation, used),
            Event::DrainedForMemory { slot, generation } => {
                if matches!(self.slots[slot].life, Life::Draining { .. }) {
                    self.stop_for_memory(slot, generation);
                }
            }
            Event::NotReady { slot, generation } => {
                let life = &mut self.slots[slot].life;
                if life.run_of(generation).is_some() {
                    // The instance task sends the SIGKILL itself.
                    life.kill(Kill::BootTimeout);
                }
            }
            Event::Exited {
                slot,
                generation,
                exit,
                ran,
                port_taken,
                oom,
                noted,
            } => {
                if self.slots[slot].life.run_of(generation).is_some() {
                    let end = RunEnd {
                        exit,
                        ran,
                        port_taken,
                        oom,
                    };
                    self.on_exit(slot, generation, end);
                }
                let _ = noted.send(());
            }
            Event::StopDue { slot, generation } => {
                let s = &self.slots[slot];
                if let Some(pid) = s.life.run_of(generation).and_then(|run| run.pid) {
                    let message = format!(
                        "sending SIGKILL to {} (still running after {})",
                        s.name,
                        describe(self.options.grace)
                    );
                    let _ = process::signal_group(pid, Signal::SIGKILL);
                    self.log(message);
                }
            }
            Event::RestartDue { slot, generation } => {
                // A slot retired while it waited to restart stays down.
                if self.phase == Phase::Running && self.slots[slot].life.restart_due(generation) {
                    let s = &mut self.slots[slot];
                    s.restarts += 1;
                    if let Some(cause) = &s.last_cause {
                        s.restarts_by_cause[cause.index()] += 1;
                    }
                    self.start_slot(slot);
                }
            }
        }
    }

    fn on_exit(&mut self, index: usize, generation: u64, end: RunEnd) {
        let waiter = self.slots[index].waiter.take();
        let why = waiter.as_ref().map(|_| self.why_not_up(index, &end.exit));
        let give_up = matches!(waiter, Some((_, IfItFails::GiveUp)))
            && !self.slots[index].life.leaving()
            && self.phase == Phase::Running;
        let given_up = why.as_ref().map(ToString::to_string).filter(|_| give_up);
        self.exited(index, generation, end, given_up.as_deref());
        // Answered once the slot's fate is settled and published: whoever waited looks at the
        // snapshot next.
        if let (Some((reply, _)), Some(why)) = (waiter, why) {
            self.publish();
            let _ = reply.send(Err(why));
        }
    }

    /// Why an instance that exited never came up: stopped, killed at its boot timeout, or
    /// exited on its own. Looked at before the slot notes the exit.
    fn why_not_up(&self, index: usize, exit: &Exit) -> Refused {
        let slot = &self.slots[index];
        let name = slot.name.clone();
        let up = if slot.probe { "ready" } else { "running" };
        let timed_out = slot
            .life
            .run()
            .is_some_and(|run| run.killed_for == Some(Kill::BootTimeout));
        let why = if slot.life.leaving() {
            format!("{name} was stopped before it was {up}")
        } else if timed_out {
            format!(
                "{name} was not ready within {} (`--boot-timeout`), so it was killed",
                describe(self.options.boot_timeout)
            )
        } else {
            format!("{name} {exit} before it was {up}")
        };
        Refused::NotUp { name, why }
    }

    /// Notes the exit of `index`'s instance and decides what follows: nothing (it was
    /// retired, or `given_up` says why it leaves the formation), the formation's start or
    /// stop, or a restart after a backoff.
    fn exited(&mut self, index: usize, generation: u64, end: RunEnd, given_up: Option<&str>) {
        let RunEnd {
            exit,
            ran,
            port_taken,
            oom,
        } = end;
        let slot = &mut self.slots[index];
        let Some(ended) = slot.life.exited(generation, &exit, oom, given_up.is_some()) else {
            return;
        };
        slot.last_exit = Some(exit.clone());
        slot.last_cause = Some(ended.cause.clone());
        let name = slot.name.clone();
        match &port_taken {
            Some(holder) => self.log(format!(
                "{name} {exit}: {holder}, since before {name} started, so {name} could not listen there"
            )),
            None => self.log(format!("{name} {exit}")),
        }
        // Not when shoal killed it for a reason of its own (chaos) after the OOM killer ended
        // another of its processes.
        if oom && ended.cause == Cause::MemoryLimit {
            let limit = self.memory_limit(index).unwrap_or(0);
            self.log(crate::memory::oom_killed(&name.to_string(), limit));
        }
        if let Some(why) = given_up {
            // Said instead of "restarting …": it is not.
            self.log(format!(
                "{why}; not restarting it: another instance serves in its place"
            ));
        }
        if ended.retiring {
            return;
        }

        if self.release == Some(index) {
            self.release = None;
            if self.phase == Phase::Starting {
                if exit.success() {
                    self.log("release finished; starting the formation");
                    self.start_formation();
                } else {
                    self.log("release failed; not starting the formation");
                    self.outcome = Some(Outcome::ReleaseFailed { exit });
                    self.phase = Phase::Stopping;
                }
            }
            return;
        }
        if self.phase != Phase::Running {
            return;
        }
        if !self.options.restart {
            self.log(format!(
                "{name} exited and restarts are off; stopping the formation"
            ));
            self.begin_stop(Outcome::InstanceExited { name, exit });
            return;
        }

        let slot = &mut self.slots[index];
        if ran >= self.options.backoff.stable_after || ended.chaos {
            slot.crashes_in_a_row = 0;
        }
        let delay = self.options.backoff.delay(slot.crashes_in_a_row);
        slot.crashes_in_a_row = slot.crashes_in_a_row.saturating_add(1);
        slot.life.crashed(generation);
        let why = match &port_taken {
            Some(holder) => format!(" (backing off while port {} is taken)", holder.port),
            None => String::new(),
        };
        self.log(format!(
            "restarting {name} in {}{why} (cause: {})",
            describe(delay),
            ended.cause
        ));
        let events = self.context.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue {
                slot: index,
                generation,
            });
        });
    }

    fn begin_stop(&mut self, outcome: Outcome) {
        if self.phase == Phase::Stopping {
            return;
        }
        self.phase = Phase::Stopping;
        self.outcome.get_or_insert(outcome);
        for slot in &mut self.slots {
            if let Some((reply, _)) = slot.waiter.take() {
                let _ = reply.send(Err(Refused::Stopping));
            }
        }
        let _ = self.stop.send(StopState::Stopping);
        self.kill_at = Some(tokio::time::Instant::now() + self.options.grace);
        let mut signalled = 0;
        for slot in &mut self.slots {
            for effect in slot.life.stop_with_formation() {
                if let Effect::Signal(pid, signal) = effect {
                    let _ = process::signal_group(pid, signal);
                    signalled += 1;
                }
            }
        }
        if signalled > 0 {
            let message = format!(
                "sending SIGTERM to {signalled} instance{}; SIGKILL after {}",
                if signalled == 1 { "" } else { "s" },
                describe(self.options.grace)
            );
            self.log(message);
        }
    }

    fn kill_all(&mut self, reason: &str) {
        if self.phase != Phase::Stopping {
            self.begin_stop(Outcome::Stopped);
        }
        self.kill_at = None;
        let _ = self.stop.send(StopState::Killing);
        let mut killed = Vec::new();
        for slot in &self.slots {
            if let Some(pid) = slot.life.pid() {
                let _ = process::signal_group(pid, Signal::SIGKILL);
                killed.push(slot.name.to_string());
            }
        }
        if !killed.is_empty() {
            self.log(format!("sending SIGKILL to {}{reason}", killed.join(", ")));
        }
    }

    /// The slot of instance `name`, while it is part of the formation and the formation runs.
    fn running_slot(&self, name: &InstanceName) -> Result<usize, Refused> {
        if self.phase == Phase::Stopping {
            return Err(Refused::Stopping);
        }
        self.slots
            .iter()
            .position(|s| &s.name == name && !s.life.leaving())
            .ok_or_else(|| Refused::NoSuchInstance { name: name.clone() })
    }

    /// Starts an instance of `kind` at index `wanted` or the lowest free one; returns its slot.
    fn add(&mut self, kind: &str, wanted: Option<u32>) -> Result<usize, Refused> {
        match self.phase {
            Phase::Running => {}
            Phase::Starting => return Err(Refused::Starting),
            Phase::Stopping => return Err(Refused::Stopping),
        }
        let plan = self.context.plan.clone();
        let kind_index = plan
            .types
            .iter()
            .position(|t| t.name == kind)
            .ok_or_else(|| Refused::UnknownType {
                kind: kind.to_owned(),
            })?;
        let process_type = &plan.types[kind_index];
        let taken: Vec<u32> = self
            .slots
            .iter()
            .filter(|s| s.name.kind == kind && s.life != Life::Retired)
            .map(|s| s.name.index)
            .collect();
        let max = shoal_procfile::formation::MAX_PER_TYPE;
        let index = match wanted {
            Some(index) if taken.contains(&index) => {
                return Err(Refused::StillThere {
                    name: InstanceName::new(kind, index),
                });
            }
            Some(index) if index == 0 || index > max => {
                return Err(Refused::OutOfRange {
                    kind: kind.to_owned(),
                    index,
                    max,
                });
            }
            Some(index) => index,
            None => (1..=max)
                .find(|i| !taken.contains(i))
                .ok_or_else(|| Refused::TooMany {
                    kind: kind.to_owned(),
                    max,
                })?,
        };
        let name = InstanceName::new(kind, index);
        let port = u32::from(process_type.first_port) + index - 1;
        let port = u16::try_from(port).map_err(|_| Refused::NoPort {
            name: name.clone(),
            port,
        })?;
        let probe = self.options.probe_type.as_deref() == Some(kind);
        // A retired slot of the same name is reused, so the table does not grow without end.
        let slot = match self
            .slots
            .iter()
            .position(|s| s.name == name && s.life == Life::Retired)
        {
            Some(slot) => {
                let s = &mut self.slots[slot];
                s.life = Life::Down;
                s.restarts = 0;
                s.restarts_by_cause = [0; Cause::LABELS.len()];
                s.crashes_in_a_row = 0;
                s.last_exit = None;
                s.last_cause = None;
                slot
            }
            None => self.add_slot(
                name.clone(),
                process_type.command.clone(),
                port,
                kind_index,
                probe,
            ),
        };
        self.start_slot(slot);
        Ok(slot)
    }

    /// Tells whoever waits on `slot`'s start that it is up. Published first: they look at the
    /// snapshot next.
    fn answer_up(&mut self, slot: usize) {
        if self.slots[slot].life.leaving() || self.slots[slot].waiter.is_none() {
            return;
        }
        self.publish();
        if let Some((reply, _)) = self.slots[slot].waiter.take() {
            let _ = reply.send(Ok(self.slots[slot].name.clone()));
        }
    }

    fn chaos_kill(&mut self, name: &InstanceName) -> Result<u32, Refused> {
        if self.phase != Phase::Running {
            return Err(Refused::NotRunning);
        }
        let slot = self.running_slot(name)?;
        let life = &mut self.slots[slot].life;
        if life.pid().is_none() {
            return Err(Refused::NoProcess { name: name.clone() });
        }
        let pid = life.kill(Kill::Chaos).expect("it has a pid");
        let _ = process::signal_group(pid, Signal::SIGKILL);
        Ok(pid)
    }

    fn drain(&mut self, name: &InstanceName) -> Result<(), Refused> {
        let slot = self.running_slot(name)?;
        if !self.slots[slot].life.drain() {
            return Err(Refused::WaitingToRestart { name: name.clone() });
        }
        self.log(format!("{name} is draining: no new requests go to it"));
        Ok(())
    }

    fn retire(&mut self, name: &InstanceName) -> Result<(), Refused> {
        let slot = self.running_slot(name)?;
        let Some(effects) = self.slots[slot].life.retire() else {
            return Ok(());
        };
        self.perform(slot, effects);
        self.stop_due_after_grace(slot, self.slots[slot].starts, name);
        Ok(())
    }

    fn publish(&self) {
        let plan = &self.context.plan;
        let instances = self
            .slots
            .iter()
            .filter(|s| s.name.kind != shoal_procfile::plan::RELEASE && s.life != Life::Retired)
            .map(|s| InstanceInfo {
                name: s.name.clone(),
                port: s.port,
                pid: s.life.pid(),
                addr: s.life.addr(),
                state: s.life.state(),
                restarts: s.restarts,
                restarts_by_cause: s.restarts_by_cause,
                started_at: s.life.run().map(|run| run.started_at),
                last_exit: s.last_exit.clone(),
                last_cause: s.last_cause.clone(),
                memory_limit: plan.types.get(s.kind_index).and_then(|t| t.memory_limit),
            })
            .collect();
        self.snapshot.send_replace(Arc::new(Snapshot { instances }));
        self.published_phase.send_if_modified(|phase| {
            let changed = *phase != self.phase;
            *phase = self.phase;
            changed
        });
    }

    fn log(&self, message: impl Into<String>) {
        self.context.log.system(message);
    }
}

/// `250 ms`, `10 s`, `1.5 s`.
fn describe(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}
