//! The controller: the one task that owns the instance table. It starts instances, restarts
//! them with backoff, runs `release` first, stops the formation with a grace period, and
//! publishes a [`Snapshot`] after every change for whoever watches (the router, `shoal ps`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shoal_procfile::{InstanceName, Plan};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::exit::Exit;
use crate::handle::{Command, Handle, IfItFails, Reply};
use crate::instance::{self, Context, Event, Start, StopState};
use crate::output::Log;
use crate::ports::Holder;
use crate::process;
use crate::scratch::RuntimeDir;
use crate::snapshot::{InstanceInfo, Outcome, Phase, Snapshot, State};

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: Duration::from_secs(10),
            restart: true,
            backoff: Backoff::default(),
            probe_type: Some("web".into()),
            watchdog: None,
            health_path: None,
            boot_timeout: Duration::from_secs(60),
            work_dirs: None,
        }
    }
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
    state: State,
    pid: Option<u32>,
    /// Where the current run was verified to serve its port, once ready.
    addr: Option<SocketAddr>,
    /// Counts starts, so that events from an earlier run are recognised and ignored.
    generation: u64,
    /// Whether an instance task is running for this slot.
    active: bool,
    restarts: u32,
    crashes_in_a_row: u32,
    started_at: Option<Instant>,
    last_exit: Option<Exit>,
    /// Stopped on request: not restarted when it exits.
    retiring: bool,
    /// Exited after being retired: no longer part of the formation.
    retired: bool,
    /// Killed by chaos mode: restarts at once, without counting as a crash.
    chaos_killed: bool,
    /// Someone waits until this start is up ([`Handle::boot`]), and what becomes of it if it
    /// fails first.
    waiter: Option<(Reply<InstanceName>, IfItFails)>,
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
        while !(self.phase == Phase::Stopping && self.slots.iter().all(|s| !s.active)) {
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
            state: State::Stopped,
            pid: None,
            addr: None,
            generation: 0,
            active: false,
            restarts: 0,
            crashes_in_a_row: 0,
            started_at: None,
            last_exit: None,
            retiring: false,
            retired: false,
            chaos_killed: false,
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
        slot.generation += 1;
        slot.active = true;
        slot.state = State::Starting;
        slot.pid = None;
        slot.addr = None;
        slot.started_at = Some(Instant::now());
        let start = Start {
            slot: index,
            generation: slot.generation,
            name: slot.name.clone(),
            command: slot.command.clone(),
            port: slot.port,
            kind_index: slot.kind_index,
            probe: slot.probe,
        };
        tokio::spawn(instance::run(self.context.clone(), start));
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Started {
                slot,
                generation,
                pid,
            } => {
                if self.slots[slot].generation != generation {
                    return;
                }
                let s = &mut self.slots[slot];
                s.pid = Some(pid);
                s.state = if s.probe {
                    State::Starting
                } else {
                    State::Running
                };
                let message = format!("{} started (pid {pid}, port {})", s.name, s.port);
                let up = !s.probe;
                self.log(message);
                if up {
                    self.answer_up(slot);
                }
                // The stop began while this instance was being spawned.
                match *self.stop.borrow() {
                    // Retired while it was being spawned: stop it now that it has a pid (the
                    // SIGKILL after the grace period is already scheduled).
                    StopState::Running if self.slots[slot].retiring => {
                        self.slots[slot].state = State::Stopping;
                        let _ = process::signal_group(pid, Signal::SIGTERM);
                    }
                    StopState::Running => {}
                    StopState::Stopping => {
                        self.slots[slot].state = State::Stopping;
                        let _ = process::signal_group(pid, Signal::SIGTERM);
                    }
                    StopState::Killing => {
                        let _ = process::signal_group(pid, Signal::SIGKILL);
                    }
                }
            }
            Event::Ready {
                slot,
                generation,
                addr,
            } => {
                let s = &mut self.slots[slot];
                if s.generation != generation || s.state != State::Starting {
                    return;
                }
                s.state = State::Ready;
                s.addr = Some(addr);
                let mut message = format!("{} is ready on port {}", s.name, s.port);
                if addr.ip() != std::net::Ipv4Addr::LOCALHOST {
                    message.push_str(&format!(" at {addr}"));
                }
                self.log(message);
                self.answer_up(slot);
            }
            Event::Exited {
                slot,
                generation,
                exit,
                ran,
                port_taken,
                noted,
            } => {
                if self.slots[slot].generation == generation {
                    self.on_exit(slot, exit, ran, port_taken);
                }
                // The slot no longer holds the pid: the process may be reaped.
                let _ = noted.send(());
            }
            Event::StopDue { slot, generation } => {
                let s = &self.slots[slot];
                if s.generation == generation
                    && s.active
                    && let Some(pid) = s.pid
                {
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
                let s = &self.slots[slot];
                // A slot retired while it waited to restart stays down.
                if self.phase == Phase::Running
                    && s.generation == generation
                    && !s.active
                    && !s.retired
                {
                    self.slots[slot].restarts += 1;
                    self.start_slot(slot);
                }
            }
        }
    }

    fn on_exit(&mut self, index: usize, exit: Exit, ran: Duration, port_taken: Option<Holder>) {
        let waiter = self.slots[index].waiter.take();
        let why = waiter.as_ref().map(|_| self.why_not_up(index, &exit, ran));
        let give_up = matches!(waiter, Some((_, IfItFails::GiveUp)))
            && !self.slots[index].retiring
            && self.phase == Phase::Running;
        self.exited(
            index,
            exit,
            ran,
            port_taken,
            why.as_deref().filter(|_| give_up),
        );
        // Answered once the slot's fate is settled and published: whoever waited looks at the
        // snapshot next.
        if let (Some((reply, _)), Some(why)) = (waiter, why) {
            self.publish();
            let _ = reply.send(Err(why));
        }
    }

    /// Why an instance that exited never came up: stopped, killed at its boot timeout, or
    /// exited on its own. Looked at before the slot notes the exit.
    fn why_not_up(&self, index: usize, exit: &Exit, ran: Duration) -> String {
        let slot = &self.slots[index];
        let name = &slot.name;
        let up = if slot.probe { "ready" } else { "running" };
        let boot_timeout = self.options.boot_timeout;
        // The instance task kills a probed instance that is not ready at its boot timeout;
        // nothing else sends SIGKILL to one still starting after that long but chaos mode.
        let timed_out = slot.probe
            && slot.state == State::Starting
            && *exit == Exit::Signal(Signal::SIGKILL as i32)
            && !slot.chaos_killed
            && ran >= boot_timeout;
        if slot.retiring {
            format!("{name} was stopped before it was {up}")
        } else if timed_out {
            format!(
                "{name} was not ready within {} (`--boot-timeout`), so it was killed",
                describe(boot_timeout)
            )
        } else {
            format!("{name} {exit} before it was {up}")
        }
    }

    /// Notes the exit of `index`'s instance and decides what follows: nothing (it was
    /// retired, or `given_up` says why it leaves the formation), the formation's start or
    /// stop, or a restart after a backoff.
    fn exited(
        &mut self,
        index: usize,
        exit: Exit,
        ran: Duration,
        port_taken: Option<Holder>,
        given_up: Option<&str>,
    ) {
        let slot = &mut self.slots[index];
        slot.active = false;
        slot.pid = None;
        slot.addr = None;
        slot.started_at = None;
        slot.last_exit = Some(exit.clone());
        slot.state = State::Stopped;
        let name = slot.name.clone();
        let retiring = slot.retiring || given_up.is_some();
        slot.retiring = retiring;
        slot.retired = retiring;
        match &port_taken {
            Some(holder) => self.log(format!(
                "{name} {exit}: {holder}, since before {name} started, so {name} could not listen there"
            )),
            None => self.log(format!("{name} {exit}")),
        }
        if let Some(why) = given_up {
            // Said instead of "restarting …": it is not.
            self.log(format!(
                "{why}; not restarting it: another instance serves in its place"
            ));
        }
        if retiring {
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
        if ran >= self.options.backoff.stable_after || std::mem::take(&mut slot.chaos_killed) {
            slot.crashes_in_a_row = 0;
        }
        let delay = self.options.backoff.delay(slot.crashes_in_a_row);
        slot.crashes_in_a_row = slot.crashes_in_a_row.saturating_add(1);
        slot.state = State::Crashed;
        let generation = slot.generation;
        let why = match &port_taken {
            Some(holder) => format!(" (backing off while port {} is taken)", holder.port),
            None => String::new(),
        };
        self.log(format!("restarting {name} in {}{why}", describe(delay)));
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
                let _ = reply.send(Err("the formation is stopping".to_owned()));
            }
        }
        let _ = self.stop.send(StopState::Stopping);
        self.kill_at = Some(tokio::time::Instant::now() + self.options.grace);
        let mut signalled = 0;
        for slot in &mut self.slots {
            if !slot.active {
                slot.state = State::Stopped;
                continue;
            }
            slot.state = State::Stopping;
            if let Some(pid) = slot.pid {
                let _ = process::signal_group(pid, Signal::SIGTERM);
                signalled += 1;
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
            if let (true, Some(pid)) = (slot.active, slot.pid) {
                let _ = process::signal_group(pid, Signal::SIGKILL);
                killed.push(slot.name.to_string());
            }
        }
        if !killed.is_empty() {
            self.log(format!("sending SIGKILL to {}{reason}", killed.join(", ")));
        }
    }

    /// The slot of instance `name`, while it is part of the formation and the formation runs.
    fn running_slot(&self, name: &InstanceName) -> Result<usize, String> {
        if self.phase == Phase::Stopping {
            return Err("the formation is stopping".into());
        }
        self.slots
            .iter()
            .position(|s| &s.name == name && !s.retired && !s.retiring)
            .ok_or_else(|| format!("no instance `{name}` is running"))
    }

    /// Starts an instance of `kind` at index `wanted` or the lowest free one; returns its slot.
    fn add(&mut self, kind: &str, wanted: Option<u32>) -> Result<usize, String> {
        match self.phase {
            Phase::Running => {}
            Phase::Starting => {
                return Err("the formation is starting (its `release` command runs)".into());
            }
            Phase::Stopping => return Err("the formation is stopping".into()),
        }
        let plan = self.context.plan.clone();
        let kind_index = plan
            .types
            .iter()
            .position(|t| t.name == kind)
            .ok_or_else(|| format!("unknown process type `{kind}`"))?;
        let process_type = &plan.types[kind_index];
        let taken: Vec<u32> = self
            .slots
            .iter()
            .filter(|s| s.name.kind == kind && !s.retired)
            .map(|s| s.name.index)
            .collect();
        let index = match wanted {
            Some(index) if taken.contains(&index) => {
                return Err(format!("`{kind}.{index}` is still in the formation"));
            }
            Some(index) if index == 0 || index > shoal_procfile::formation::MAX_PER_TYPE => {
                return Err(format!(
                    "`{kind}.{index}` is out of range (1 to {})",
                    shoal_procfile::formation::MAX_PER_TYPE
                ));
            }
            Some(index) => index,
            None => (1..=shoal_procfile::formation::MAX_PER_TYPE)
                .find(|i| !taken.contains(i))
                .ok_or_else(|| {
                    format!(
                        "`{kind}` already has {} instances, the most one type can have",
                        shoal_procfile::formation::MAX_PER_TYPE
                    )
                })?,
        };
        let port = u32::from(process_type.first_port) + index - 1;
        let port =
            u16::try_from(port).map_err(|_| format!("`{kind}.{index}` would need port {port}"))?;
        let name = InstanceName::new(kind, index);
        let probe = self.options.probe_type.as_deref() == Some(kind);
        // A retired slot of the same name is reused, so the table does not grow without end.
        let slot = match self.slots.iter().position(|s| s.name == name && s.retired) {
            Some(slot) => {
                let s = &mut self.slots[slot];
                s.retired = false;
                s.retiring = false;
                s.restarts = 0;
                s.crashes_in_a_row = 0;
                s.last_exit = None;
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
        if self.slots[slot].retiring || self.slots[slot].waiter.is_none() {
            return;
        }
        self.publish();
        if let Some((reply, _)) = self.slots[slot].waiter.take() {
            let _ = reply.send(Ok(self.slots[slot].name.clone()));
        }
    }

    fn chaos_kill(&mut self, name: &InstanceName) -> Result<u32, String> {
        if self.phase != Phase::Running {
            return Err("the formation is not running".into());
        }
        let slot = self.running_slot(name)?;
        let s = &mut self.slots[slot];
        let pid = s
            .pid
            .filter(|_| s.active)
            .ok_or_else(|| format!("`{name}` is not running"))?;
        s.chaos_killed = true;
        let _ = process::signal_group(pid, Signal::SIGKILL);
        Ok(pid)
    }

    fn drain(&mut self, name: &InstanceName) -> Result<(), String> {
        let slot = self.running_slot(name)?;
        let s = &mut self.slots[slot];
        if !s.active {
            return Err(format!(
                "`{name}` is not running (it is waiting to restart)"
            ));
        }
        s.state = State::Draining;
        self.log(format!("{name} is draining: no new requests go to it"));
        Ok(())
    }

    fn retire(&mut self, name: &InstanceName) -> Result<(), String> {
        let slot = self.running_slot(name)?;
        let grace = self.options.grace;
        let s = &mut self.slots[slot];
        s.retiring = true;
        if !s.active {
            s.retired = true;
            s.state = State::Stopped;
            return Ok(());
        }
        s.state = State::Stopping;
        if let Some(pid) = s.pid {
            let _ = process::signal_group(pid, Signal::SIGTERM);
        }
        let generation = s.generation;
        self.log(format!(
            "stopping {name}: SIGTERM, then SIGKILL after {}",
            describe(grace)
        ));
        let events = self.context.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = events.send(Event::StopDue { slot, generation });
        });
        Ok(())
    }

    fn publish(&self) {
        let instances = self
            .slots
            .iter()
            .filter(|s| s.name.kind != shoal_procfile::plan::RELEASE && !s.retired)
            .map(|s| InstanceInfo {
                name: s.name.clone(),
                port: s.port,
                pid: s.pid,
                addr: s.addr,
                state: s.state,
                restarts: s.restarts,
                started_at: s.started_at,
                last_exit: s.last_exit.clone(),
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
