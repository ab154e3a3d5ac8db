//! Spawning an instance's process and signalling its process group.
//!
//! Every instance runs as `sh -c COMMAND` in a process group of its own, so that a signal sent
//! to the group reaches the real process and everything it started, and so that the terminal's
//! Ctrl-C reaches shoal alone (shoal then stops the formation in order). A simple command runs
//! as `sh -c 'exec COMMAND'`, so the command itself is the instance's main process; compound
//! commands (`a && b`, `a; b`, pipelines) keep `sh` as their parent.
//!
//! Each main process also gets a parent-death signal (SIGKILL), so that it does not outlive a
//! shoal that was itself killed with SIGKILL. Linux sends that signal when the *thread* that
//! spawned the child exits, not the process, so all spawning happens on one dedicated thread
//! that lives as long as shoal.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// What a child needs to start: the command and where and with what it runs.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The Procfile command.
    pub command: &'a str,
    /// The working directory.
    pub dir: &'a Path,
    /// Variables added to shoal's own environment.
    pub env: &'a [(String, String)],
    /// `false` for a formation instance: its own process group, no stdin, output piped to the
    /// log. `true` for `shoal run`: shoal's process group (so it can use the terminal) and
    /// shoal's stdin, stdout and stderr.
    pub foreground: bool,
}

type Job = Box<dyn FnOnce() + Send>;

/// Starts `sh -c COMMAND` with a parent-death signal, in its own process group unless it runs
/// in the foreground.
pub async fn spawn(launch: &Launch<'_>) -> io::Result<Child> {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(shell_command(launch.command))
        .current_dir(launch.dir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(false);
    if !launch.foreground {
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let shoal = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // shoal may have died between fork and prctl: then nobody would ever send the
            // signal, so do not start at all.
            if libc::getppid() as u32 != shoal {
                return Err(io::Error::other("shoal exited while starting the instance"));
            }
            Ok(())
        });
    }
    on_spawner_thread(move || command.spawn()).await
}

/// Runs `job` on the one long-lived spawning thread, inside the caller's tokio runtime.
async fn on_spawner_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    static SPAWNER: OnceLock<std_mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("shoal-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("the spawner thread starts");
        tx
    });
    let runtime = tokio::runtime::Handle::try_current().ok();
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let wrapped: Job = Box::new(move || {
        let _guard = runtime.as_ref().map(|r| r.enter());
        let _ = reply_tx.send(job());
    });
    spawner
        .send(wrapped)
        .expect("the spawner thread lives as long as shoal");
    reply_rx
        .await
        .expect("the spawner thread answers every job")
}

/// `exec COMMAND` for a simple command, the command unchanged otherwise.
pub fn shell_command(command: &str) -> String {
    let first_word = command.split_whitespace().next().unwrap_or("");
    let compound = command.contains([';', '&', '|', '(', ')', '`', '\n', '{', '}'])
        || first_word.contains('=')
        || matches!(
            first_word,
            "exec"
                | "if"
                | "for"
                | "while"
                | "until"
                | "case"
                | "!"
                | "function"
                | "set"
                | "cd"
                | "export"
                | "ulimit"
                | "umask"
                | "trap"
        );
    if compound {
        command.to_owned()
    } else {
        format!("exec {command}")
    }
}

/// Sends `signal` to process group `pgid`; a group that no longer exists is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

/// Whether any process of group `pgid` is still running; zombies waiting for a parent that does
/// not reap them do not count.
pub fn group_is_alive(pgid: u32) -> bool {
    match killpg(Pid::from_raw(pgid as i32), None) {
        Err(Errno::ESRCH) => false,
        Err(_) => true,
        Ok(()) => live_members_in_proc(pgid).unwrap_or(true),
    }
}

/// Scans `/proc` for a member of group `pgid` that is not a zombie.
fn live_members_in_proc(pgid: u32) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain anything, so parse after it:
        // `) STATE PPID PGRP ...`.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        if group == Some(pgid) && state != Some("Z") && state != Some("X") {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_are_execed_compound_ones_are_not() {
        assert_eq!(
            shell_command("bundle exec puma -p $PORT"),
            "exec bundle exec puma -p $PORT"
        );
        assert_eq!(shell_command("./server > log 2>&1"), "./server > log 2>&1");
        for compound in [
            "a && b",
            "a; b",
            "a | b",
            "FOO=1 b",
            "exec b",
            "(a)",
            "if true; then a; fi",
            "a\nb",
        ] {
            assert_eq!(shell_command(compound), compound);
        }
    }
}
