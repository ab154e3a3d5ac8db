//! The life of one instance as the controller sees it: one value, [`Life`], and the
//! transitions between its stages. The transitions are pure — they take what happened and
//! return what to do (a signal to send, someone to tell), never doing it — so the controller's
//! loop performs the effects and unit tests drive every path without a process.
//!
//! ```text
//!  Down ──start──▶ Starting ──ready/started──▶ Up ──drain──▶ Draining
//!   ▲                 │                         │               │
//!   │                 └──────────┬──────────────┴───────────────┘
//!   │                      retire│stop            exit (not asked)
//!   │                            ▼                      │
//!   │                        Stopping ─exit─▶ Retired   ▼
//!   └──────────── exit while the formation stops ◀── Crashed ──restart due──▶ Starting
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::cause::Cause;
use crate::exit::Exit;
use crate::instance::StopState;
use crate::snapshot::State;

/// One start of an instance: from its spawn to its exit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    /// Counts starts, so that events from an earlier run are recognised and ignored.
    pub(crate) generation: u64,
    /// Its main process (and process group), once spawned.
    pub(crate) pid: Option<u32>,
    pub(crate) started_at: Instant,
    /// Why shoal killed this run itself, if it did: what its exit is put down to.
    pub(crate) killed_for: Option<Kill>,
}

/// Why shoal sent SIGKILL to a run that was not being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Chaos mode: restarts at once, without counting as a crash.
    Chaos,
    /// It was not ready within its boot timeout.
    BootTimeout,
    /// It used twice its memory limit.
    MemoryLimit,
}

/// Why a run is being stopped with SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Stopped for good on request: it leaves the formation when it exits.
    Retire,
    /// The whole formation stops.
    Formation,
    /// Restarted by shoal (drained first) because it used twice its memory limit.
    MemoryLimit,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Life {
    /// Not running and not coming back by itself: never started, exited while the formation
    /// stops, or a `release` that ended.
    Down,
    /// Spawned, or being spawned; not up yet (its port is not ready, for a probed type).
    Starting(Run),
    /// Up: running (a type that is not probed), or ready at `addr` (a probed one).
    Up { run: Run, addr: Option<SocketAddr> },
    /// Out of the router's rotation, still running.
    Draining { run: Run, addr: Option<SocketAddr> },
    /// Sent SIGTERM (or about to be, once it has a pid); not exited yet.
    Stopping { run: Run, why: Stop },
    /// Exited; waits for the restart of `generation` once its backoff is over.
    Crashed { generation: u64 },
    /// Left the formation.
    Retired,
}

/// What a transition asks the controller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Send `signal` to the process group `pid`.
    Signal(u32, Signal),
    /// Tell whoever waits that the instance is up.
    Up,
}

/// How a run ended, as a transition to [`Life::Down`] reports it; the controller decides what
/// follows (a restart, the formation's next step, or nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// What the exit is put down to.
    pub(crate) cause: Cause,
    /// It was stopped for good on request (or given up): it leaves the formation.
    pub(crate) retiring: bool,
    /// It was killed by chaos mode: its restart is not a crash. (A restart for using twice
    /// the memory limit is one, whether shoal or the kernel ended it: an instance that grows
    /// that fast at every start backs off like any other that keeps failing.)
    pub(crate) chaos: bool,
}

impl Life {
    /// The state others see.
    pub(crate) fn state(&self) -> State {
        match self {
            Life::Down | Life::Retired => State::Stopped,
            Life::Starting(_) => State::Starting,
            Life::Up { addr: Some(_), .. } => State::Ready,
            Life::Up { addr: None, .. } => State::Running,
            Life::Draining { .. } => State::Draining,
            Life::Stopping { .. } => State::Stopping,
            Life::Crashed { .. } => State::Crashed,
        }
    }

    /// The current run, while there is one (an instance task runs for it).
    pub(crate) fn run(&self) -> Option<&Run> {
        match self {
            Life::Starting(run)
            | Life::Up { run, .. }
            | Life::Draining { run, .. }
            | Life::Stopping { run, .. } => Some(run),
            Life::Down | Life::Crashed { .. } | Life::Retired => None,
        }
    }

    fn run_mut(&mut self) -> Option<&mut Run> {
        match self {
            Life::Starting(run)
            | Life::Up { run, .. }
            | Life::Draining { run, .. }
            | Life::Stopping { run, .. } => Some(run),
            Life::Down | Life::Crashed { .. } | Life::Retired => None,
        }
    }

    /// Whether an instance task runs for this slot.
    pub(crate) fn is_active(&self) -> bool {
        self.run().is_some()
    }

    /// The current run, if it is run `generation`: events of earlier runs are ignored.
    pub(crate) fn run_of(&self, generation: u64) -> Option<&Run> {
        self.run().filter(|run| run.generation == generation)
    }

    /// The running process, if any.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.run().and_then(|run| run.pid)
    }

    /// Where the router may reach it: set while it is ready or draining.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        match self {
            Life::Up { addr, .. } | Life::Draining { addr, .. } => *addr,
            _ => None,
        }
    }

    /// Whether it is leaving the formation (stopped for good, or gone).
    pub(crate) fn leaving(&self) -> bool {
        matches!(
            self,
            Life::Retired
                | Life::Stopping {
                    why: Stop::Retire,
                    ..
                }
        )
    }

    /// A new run `generation` begins (the spawn is under way).
    pub(crate) fn start(&mut self, generation: u64, now: Instant) {
        *self = Life::Starting(Run {
            generation,
            pid: None,
            started_at: now,
            killed_for: None,
        });
    }

    /// Run `generation`'s main process is `pid`. A type that is not probed is up now; one
    /// stopped while it was being spawned is signalled now that it has a pid.
    pub(crate) fn started(
        &mut self,
        generation: u64,
        pid: u32,
        probe: bool,
        formation: StopState,
    ) -> Vec<Effect> {
        if self.run_of(generation).is_none() {
            return Vec::new();
        }
        if let Some(run) = self.run_mut() {
            run.pid = Some(pid);
        }
        let mut effects = Vec::new();
        if let Life::Starting(run) = self
            && !probe
        {
            *self = Life::Up {
                run: run.clone(),
                addr: None,
            };
            effects.push(Effect::Up);
        }
        let signal = match (formation, &*self) {
            (StopState::Killing, _) => Some(Signal::SIGKILL),
            (StopState::Stopping, _) => Some(Signal::SIGTERM),
            (StopState::Running, Life::Stopping { .. }) => Some(Signal::SIGTERM),
            (StopState::Running, _) => None,
        };
        if formation == StopState::Stopping
            && let Some(run) = self.run().cloned()
            && !matches!(self, Life::Stopping { .. })
        {
            *self = Life::Stopping {
                run,
                why: Stop::Formation,
            };
        }
        effects.extend(signal.map(|signal| Effect::Signal(pid, signal)));
        effects
    }

    /// Run `generation` is ready at `addr`; whether that is news (it was starting).
    pub(crate) fn ready(&mut self, generation: u64, addr: SocketAddr) -> bool {
        match self {
            Life::Starting(run) if run.generation == generation => {
                *self = Life::Up {
                    run: run.clone(),
                    addr: Some(addr),
                };
                true
            }
            _ => false,
        }
    }

    /// Takes it out of the router's rotation; `false` when it has no running process (it
    /// waits to restart).
    pub(crate) fn drain(&mut self) -> bool {
        let Some(run) = self.run().cloned() else {
            return false;
        };
        let addr = self.addr();
        *self = Life::Draining { run, addr };
        true
    }

    /// Notes that shoal kills the current run for `why`; the pid to send SIGKILL to, if it
    /// has one.
    pub(crate) fn kill(&mut self, why: Kill) -> Option<u32> {
        let run = self.run_mut()?;
        run.killed_for = Some(why);
        run.pid
    }

    /// Stops it for good: SIGTERM to its process (if it has one yet; else once it has), and
    /// it leaves the formation when it exits. One that is not running leaves at once:
    /// `None`.
    pub(crate) fn retire(&mut self) -> Option<Vec<Effect>> {
        self.stop_for(Stop::Retire)
    }

    /// Stops the current run so that it restarts (SIGTERM, then SIGKILL after the grace
    /// period): used when it passed twice its memory limit and was drained first.
    pub(crate) fn stop_to_restart(&mut self) -> Option<Vec<Effect>> {
        let run = self.run_mut()?;
        run.killed_for = Some(Kill::MemoryLimit);
        self.stop_for(Stop::MemoryLimit)
    }

    fn stop_for(&mut self, why: Stop) -> Option<Vec<Effect>> {
        let Some(run) = self.run().cloned() else {
            *self = match why {
                Stop::Retire => Life::Retired,
                Stop::Formation | Stop::MemoryLimit => Life::Down,
            };
            return None;
        };
        let pid = run.pid;
        *self = Life::Stopping { run, why };
        Some(
            pid.map(|pid| Effect::Signal(pid, Signal::SIGTERM))
                .into_iter()
                .collect(),
        )
    }

    /// The formation stops: SIGTERM to a running process (again to one being retired, which
    /// keeps going out of the formation); one that is not running stays down.
    pub(crate) fn stop_with_formation(&mut self) -> Vec<Effect> {
        match self {
            Life::Retired => Vec::new(),
            Life::Stopping {
                why: Stop::Retire, ..
            } => self
                .pid()
                .map(|pid| Effect::Signal(pid, Signal::SIGTERM))
                .into_iter()
                .collect(),
            _ => self.stop_for(Stop::Formation).unwrap_or_default(),
        }
    }

    /// Run `generation` exited with `exit` (`oom`: the kernel's OOM killer ended it in its
    /// memory cgroup); it is down now. `give_up`: it leaves the formation (someone else
    /// serves in its place). `None` for an earlier run's exit.
    pub(crate) fn exited(
        &mut self,
        generation: u64,
        exit: &Exit,
        oom: bool,
        give_up: bool,
    ) -> Option<Ended> {
        let run = self.run_of(generation)?.clone();
        let why = match self {
            Life::Stopping { why, .. } => Some(*why),
            _ => None,
        };
        let cause = match run.killed_for {
            Some(Kill::Chaos) => Cause::Chaos,
            Some(Kill::BootTimeout) => Cause::FailedReadiness,
            Some(Kill::MemoryLimit) => Cause::MemoryLimit,
            None if oom => Cause::MemoryLimit,
            None => Cause::from(exit),
        };
        let retiring = why == Some(Stop::Retire) || give_up;
        *self = if retiring { Life::Retired } else { Life::Down };
        Some(Ended {
            cause,
            retiring,
            chaos: run.killed_for == Some(Kill::Chaos),
        })
    }

    /// It waits for restart `generation` (it exited while the formation runs).
    pub(crate) fn crashed(&mut self, generation: u64) {
        *self = Life::Crashed { generation };
    }

    /// Whether the restart of `generation` is due now (it still waits for it: it was not
    /// retired or stopped meanwhile).
    pub(crate) fn restart_due(&self, generation: u64) -> bool {
        *self == Life::Crashed { generation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5100".parse().unwrap()
    }

    fn started(probe: bool) -> Life {
        let mut life = Life::Down;
        life.start(1, Instant::now());
        assert_eq!(life.state(), State::Starting);
        life.started(1, 42, probe, StopState::Running);
        life
    }

    #[test]
    fn a_probed_instance_is_up_once_ready_another_once_started() {
        let mut life = started(true);
        assert_eq!(life.state(), State::Starting);
        assert_eq!(life.pid(), Some(42));
        assert!(life.ready(1, addr()));
        assert_eq!(life.state(), State::Ready);
        assert_eq!(life.addr(), Some(addr()));
        assert!(!life.ready(1, addr()), "ready only once");

        let mut life = Life::Down;
        life.start(1, Instant::now());
        assert_eq!(
            life.started(1, 7, false, StopState::Running),
            vec![Effect::Up]
        );
        assert_eq!(life.state(), State::Running);
    }

    #[test]
    fn events_of_an_earlier_run_are_ignored() {
        let mut life = started(true);
        life.start(2, Instant::now());
        assert!(life.started(1, 99, true, StopState::Running).is_empty());
        assert_eq!(life.pid(), None);
        assert!(!life.ready(1, addr()));
        assert_eq!(life.exited(1, &Exit::Code(1), false, false), None);
        assert!(life.is_active());
    }

    #[test]
    fn an_exit_it_was_not_asked_for_waits_for_its_restart() {
        let mut life = started(true);
        let ended = life.exited(1, &Exit::Code(3), false, false).unwrap();
        assert_eq!(ended.cause, Cause::Exit(3));
        assert!(!ended.retiring && !ended.chaos);
        assert_eq!(life, Life::Down);
        life.crashed(1);
        assert_eq!(life.state(), State::Crashed);
        assert!(life.restart_due(1));
        assert!(!life.restart_due(2));
    }

    #[test]
    fn retired_it_leaves_the_formation() {
        let mut life = started(true);
        life.ready(1, addr());
        assert!(life.drain());
        assert_eq!(life.state(), State::Draining);
        assert_eq!(
            life.retire(),
            Some(vec![Effect::Signal(42, Signal::SIGTERM)])
        );
        assert!(life.leaving());
        let ended = life
            .exited(1, &Exit::Signal(Signal::SIGTERM as i32), false, false)
            .unwrap();
        assert!(ended.retiring);
        assert_eq!(life, Life::Retired);
    }

    #[test]
    fn retired_while_waiting_to_restart_it_is_gone_at_once() {
        let mut life = Life::Crashed { generation: 3 };
        assert!(!life.drain());
        assert_eq!(life.retire(), None);
        assert_eq!(life, Life::Retired);
        assert!(!life.restart_due(3));
    }

    #[test]
    fn retired_while_being_spawned_it_is_stopped_once_it_has_a_pid() {
        let mut life = Life::Down;
        life.start(1, Instant::now());
        assert_eq!(life.retire(), Some(vec![]));
        assert_eq!(
            life.started(1, 42, true, StopState::Running),
            vec![Effect::Signal(42, Signal::SIGTERM)]
        );
        assert_eq!(life.state(), State::Stopping);
    }

    #[test]
    fn the_formation_s_stop_reaches_one_being_spawned() {
        let mut life = Life::Down;
        life.start(1, Instant::now());
        assert_eq!(life.stop_with_formation(), vec![]);
        assert_eq!(
            life.started(1, 42, false, StopState::Stopping),
            vec![Effect::Signal(42, Signal::SIGTERM)]
        );
        assert_eq!(life.state(), State::Stopping);
        let ended = life.exited(1, &Exit::Code(0), false, false).unwrap();
        assert!(!ended.retiring);
        assert_eq!(life, Life::Down);

        let mut life = Life::Down;
        life.start(1, Instant::now());
        assert_eq!(
            life.started(1, 42, true, StopState::Killing),
            vec![Effect::Signal(42, Signal::SIGKILL)]
        );
    }

    #[test]
    fn a_retirement_in_progress_survives_the_formation_s_stop() {
        let mut life = started(false);
        life.retire();
        assert_eq!(
            life.stop_with_formation(),
            vec![Effect::Signal(42, Signal::SIGTERM)]
        );
        assert!(
            life.exited(1, &Exit::Code(0), false, false)
                .unwrap()
                .retiring
        );
        let mut crashed = Life::Crashed { generation: 1 };
        assert_eq!(crashed.stop_with_formation(), vec![]);
        assert_eq!(crashed.state(), State::Stopped);
    }

    #[test]
    fn what_a_kill_is_put_down_to() {
        let sigkill = Exit::Signal(Signal::SIGKILL as i32);
        for (kill, cause) in [
            (Kill::Chaos, Cause::Chaos),
            (Kill::BootTimeout, Cause::FailedReadiness),
            (Kill::MemoryLimit, Cause::MemoryLimit),
        ] {
            let mut life = started(true);
            assert_eq!(life.kill(kill), Some(42));
            let ended = life.exited(1, &sigkill, false, false).unwrap();
            assert_eq!(ended.cause, cause);
            assert_eq!(ended.chaos, kill == Kill::Chaos);
        }
        let mut life = started(true);
        let ended = life.exited(1, &sigkill, true, false).unwrap();
        assert_eq!(ended.cause, Cause::MemoryLimit, "the kernel's OOM killer");
        let mut life = started(true);
        let ended = life.exited(1, &sigkill, false, false).unwrap();
        assert_eq!(ended.cause, Cause::Signal(Signal::SIGKILL as i32));
    }

    #[test]
    fn a_memory_restart_stops_it_and_restarts_it() {
        let mut life = started(true);
        life.ready(1, addr());
        life.drain();
        assert_eq!(
            life.stop_to_restart(),
            Some(vec![Effect::Signal(42, Signal::SIGTERM)])
        );
        assert!(!life.leaving());
        let ended = life.exited(1, &Exit::Code(0), false, false).unwrap();
        assert_eq!(ended.cause, Cause::MemoryLimit);
        assert!(!ended.retiring && !ended.chaos);
    }

    #[test]
    fn one_given_up_leaves() {
        let mut life = started(true);
        let ended = life.exited(1, &Exit::Code(1), false, true).unwrap();
        assert!(ended.retiring);
        assert_eq!(life, Life::Retired);
    }
}
