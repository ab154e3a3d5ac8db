//! The handle others steer and observe a formation with: commands go to the controller over a
//! channel, and answers and snapshots come back; nothing reaches into the controller's state.

use std::sync::Arc;

use shoal_procfile::InstanceName;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::Refused;
use crate::snapshot::{Phase, Snapshot};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Refused>>;

/// What becomes of an instance started by [`Handle::boot`] that exits, or is killed at its
/// boot timeout, before it is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfItFails {
    /// It is restarted with backoff, as any instance that exits.
    Restart,
    /// It leaves the formation: something else (the instance it was to replace, or one
    /// standing in) keeps serving, so restarting it would only add an instance.
    GiveUp,
}

pub(crate) enum Command {
    Stop,
    Kill,
    Add {
        kind: String,
        /// The index to start at; `None`: the lowest free one.
        index: Option<u32>,
        /// `None`: answer once it is started. `Some`: answer once it is up, or with why not.
        until_up: Option<IfItFails>,
        reply: Reply<InstanceName>,
    },
    Drain {
        name: InstanceName,
        reply: Reply<()>,
    },
    Retire {
        name: InstanceName,
        reply: Reply<()>,
    },
    ChaosKill {
        name: InstanceName,
        reply: Reply<u32>,
    },
}

/// Steers and observes a running formation.
#[derive(Clone)]
pub struct Handle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) snapshot: watch::Receiver<Arc<Snapshot>>,
    pub(crate) phase: watch::Receiver<Phase>,
}

impl Handle {
    /// Stops every instance: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    /// Sends SIGKILL to every instance now (a second Ctrl-C).
    pub fn kill(&self) {
        let _ = self.commands.send(Command::Kill);
    }

    /// Starts one more instance of process type `kind` (at the lowest free index) and returns
    /// its name.
    pub async fn add(&self, kind: &str) -> Result<InstanceName, Refused> {
        self.ask(|reply| Command::Add {
            kind: kind.to_owned(),
            index: None,
            until_up: None,
            reply,
        })
        .await
    }

    /// Starts instance `name` again, at its own index, once it has left the formation (an
    /// error while an instance of that name is still there). Unlike [`Handle::add`], the
    /// name does not depend on which other instances happen to be gone at that moment.
    pub async fn add_as(&self, name: &InstanceName) -> Result<InstanceName, Refused> {
        self.ask(|reply| Command::Add {
            kind: name.kind.clone(),
            index: Some(name.index),
            until_up: None,
            reply,
        })
        .await
    }

    /// Starts an instance of `kind` (at `index`, or the lowest free one) and answers once it
    /// is up: ready, or running for a type that is not probed. When it exits or reaches its
    /// boot timeout first, the error says which, and `if_it_fails` says what becomes of it.
    /// An error also when the formation is not running or begins to stop meanwhile.
    pub async fn boot(
        &self,
        kind: &str,
        index: Option<u32>,
        if_it_fails: IfItFails,
    ) -> Result<InstanceName, Refused> {
        self.ask(|reply| Command::Add {
            kind: kind.to_owned(),
            index,
            until_up: Some(if_it_fails),
            reply,
        })
        .await
    }

    /// Takes instance `name` out of the router's rotation; it keeps running.
    pub async fn drain(&self, name: &InstanceName) -> Result<(), Refused> {
        self.ask(|reply| Command::Drain {
            name: name.clone(),
            reply,
        })
        .await
    }

    /// Stops instance `name` for good (SIGTERM, then SIGKILL after the grace period); it is
    /// not restarted and leaves the formation once it has exited.
    pub async fn retire(&self, name: &InstanceName) -> Result<(), Refused> {
        self.ask(|reply| Command::Retire {
            name: name.clone(),
            reply,
        })
        .await
    }

    /// Kills instance `name` with SIGKILL, as a crash would; it restarts at once (a chaos kill
    /// does not lengthen its backoff). Returns the pid killed.
    pub async fn chaos_kill(&self, name: &InstanceName) -> Result<u32, Refused> {
        self.ask(|reply| Command::ChaosKill {
            name: name.clone(),
            reply,
        })
        .await
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, Refused> {
        let (reply, answer) = oneshot::channel();
        // A controller that is gone has ended the formation: to whoever asks, it is stopping.
        self.commands
            .send(command(reply))
            .map_err(|_| Refused::Stopping)?;
        answer.await.unwrap_or(Err(Refused::Stopping))
    }

    /// The formation as it is now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Whether the formation is starting, running or stopping, now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }
}
