//! A guard process for the one case a supervisor cannot handle itself: being killed with
//! SIGKILL. shoal starts it once, in a process group of its own, and tells it through a pipe
//! which process groups its instances have. When the pipe closes — shoal exited, however it
//! exited — the watchdog sends SIGKILL to every group still listed and exits. The kernel's
//! parent-death signal only reaches each instance's main process; the watchdog also reaches
//! what those processes started.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::Signal;

use crate::process;

/// shoal's end of the watchdog.
#[derive(Debug)]
pub struct Watchdog {
    pipe: Mutex<ChildStdin>,
    _child: Child,
}

impl Watchdog {
    /// Starts `program ARGS` as the watchdog; it must call [`run`] with its stdin.
    pub fn start(program: &Path, args: &[&str]) -> io::Result<Watchdog> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Out of shoal's process group, so that a terminal's Ctrl-C does not reach it.
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take().expect("the watchdog's stdin is piped");
        Ok(Watchdog {
            pipe: Mutex::new(pipe),
            _child: child,
        })
    }

    /// Adds process group `pgid` to the groups killed if shoal dies.
    pub fn watch(&self, pgid: u32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// Removes process group `pgid`: it is empty.
    pub fn forget(&self, pgid: u32) {
        self.send(&format!("-{pgid}\n"));
    }

    fn send(&self, line: &str) {
        // A dead watchdog only loses the guard, never the formation.
        let _ = self.pipe.lock().unwrap().write_all(line.as_bytes());
    }
}

/// The watchdog's life: read `+PGID` / `-PGID` lines until end of input, then kill every group
/// still listed.
pub fn run(input: impl BufRead) {
    let mut groups = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (sign, number) = line.split_at(line.len().min(1));
        match (sign, number.parse::<u32>()) {
            ("+", Ok(pgid)) => {
                groups.insert(pgid);
            }
            ("-", Ok(pgid)) => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        let _ = process::signal_group(pgid, Signal::SIGKILL);
    }
}
