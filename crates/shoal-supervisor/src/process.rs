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

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::exit::Exit;

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
    /// An open `cgroup.procs` the child writes itself into before it runs the command (see
    /// [`crate::memory`]).
    pub cgroup_procs: Option<i32>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The `PATH` an instance sees: its own variables first, else shoal's.
fn instance_path(env: &[(String, String)]) -> Option<std::ffi::OsString> {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.into())
        .or_else(|| std::env::var_os("PATH"))
}

/// `sh -c COMMAND` with its directory, environment and parent-death signal; in its own process
/// group with piped output unless it runs in the foreground.
fn shell(launch: &Launch<'_>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(shell_command(
            launch.command,
            instance_path(launch.env).as_deref(),
        ))
        .current_dir(launch.dir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)));
    if !launch.foreground {
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let shoal = std::process::id();
    let cgroup_procs = launch.cgroup_procs;
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (write, prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            // Into its memory cgroup before it runs anything, so nothing it starts escapes.
            if let Some(fd) = cgroup_procs {
                crate::memory::enter(fd)?;
            }
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
    command
}

/// Starts a command in the foreground (`shoal run`), waited for with tokio.
pub async fn spawn(launch: &Launch<'_>) -> io::Result<Child> {
    let mut command = Command::from(shell(launch));
    command.kill_on_drop(false);
    on_spawner_thread(move || command.spawn()).await
}

/// A formation instance's main process: its pid, its output, and its exit — observed without
/// reaping it, so that its pid, which is also its process group's id, cannot be reused by an
/// unrelated process until [`InstanceProcess::reap`] is called. Until then shoal can signal
/// the group safely.
pub struct InstanceProcess {
    pub pid: u32,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pidfd: AsyncFd<OwnedFd>,
}

impl InstanceProcess {
    /// Starts an instance in its own process group.
    pub async fn spawn(launch: &Launch<'_>) -> io::Result<InstanceProcess> {
        let mut command = shell(launch);
        let mut child = on_spawner_thread(move || command.spawn()).await?;
        let pid = child.id();
        // The child is not reaped (std never reaps on drop), so its pid cannot be reused
        // before the pidfd is open.
        // SAFETY: pidfd_open takes a pid and flags and returns a new file descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let stdout = child
            .stdout
            .take()
            .map(|p| pipe::Receiver::from_owned_fd(p.into()))
            .transpose()?;
        let stderr = child
            .stderr
            .take()
            .map(|p| pipe::Receiver::from_owned_fd(p.into()))
            .transpose()?;
        // SAFETY: the `OwnedFd` stays open, and refers to the same pidfd, for as long as the
        // `AsyncFd` owns it.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE)? };
        Ok(InstanceProcess {
            pid,
            stdout,
            stderr,
            pidfd,
        })
    }

    /// Waits until the process has exited, and says how; it stays a zombie until reaped.
    pub async fn exited(&self) -> io::Result<Exit> {
        loop {
            let mut ready = self.pidfd.readable().await?;
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
            match waitid(Id::PIDFd(self.pidfd.get_ref().as_fd()), flags) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(Exit::Signal(signal as i32)),
                Ok(_) => ready.clear_ready(),
                Err(errno) => return Err(io::Error::from(errno)),
            }
        }
    }

    /// Reaps the exited process: from now on its pid may be reused.
    pub fn reap(self) {
        let _ = waitid(
            Id::PIDFd(self.pidfd.get_ref().as_fd()),
            WaitPidFlag::WEXITED,
        );
    }
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

/// `exec COMMAND` for a simple command whose program is a path or found on `path` (the `PATH`
/// the instance sees), the command unchanged otherwise.
pub fn shell_command(command: &str, path: Option<&OsStr>) -> String {
    shoal_procfile::command::exec_form(command, |program| names_a_program(program, path))
}

/// Whether `word` is a path or a program found on `path` (rather than a builtin or keyword).
fn names_a_program(word: &str, path: Option<&OsStr>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if word.is_empty() {
        return false;
    }
    if word.contains('/') {
        return true;
    }
    let Some(path) = path else { return false };
    std::env::split_paths(path).any(|dir| {
        std::fs::metadata(dir.join(word))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
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

/// The live processes of group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    live_processes(|stat| stat.group == pgid)
}

/// The live processes whose parent is `pid` (for shoal itself as a subreaper: the orphans
/// re-parented to it as well as its own children).
pub fn children_of(pid: u32) -> Vec<u32> {
    live_processes(|stat| stat.parent == pid)
}

/// The processes in `/proc` that are not zombies and that `keep` accepts.
fn live_processes(keep: impl Fn(&Stat) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat(pid).is_some_and(|stat| stat.state != "Z" && stat.state != "X" && keep(&stat))
        })
        .collect()
}

/// What `/proc/PID/stat` says of a process.
struct Stat {
    state: String,
    parent: u32,
    group: u32,
    /// CPU time of the process and of the children it has waited for, in clock ticks.
    cpu_ticks: u64,
    /// Resident set, in pages.
    rss_pages: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything, so parse after it:
    // `) STATE PPID PGRP SESSION TTY TPGID FLAGS MINFLT CMINFLT MAJFLT CMAJFLT UTIME STIME
    // CUTIME CSTIME PRIORITY NICE THREADS ITREALVALUE STARTTIME VSIZE RSS ...` (proc(5)).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        state: (*fields.first()?).to_owned(),
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        cpu_ticks: (11..=14).filter_map(number).sum(),
        rss_pages: number(21).unwrap_or(0),
    })
}

/// CPU time and resident memory of a process group, summed over its live processes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

/// The usage of every process group on the machine, from one pass over `/proc` (so that a
/// scrape costs one pass whatever the formation's size). Zombies count for nothing.
pub fn usage_by_group() -> std::collections::HashMap<u32, Usage> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = if page > 0 { page as u64 } else { 4096 };
    let mut groups: std::collections::HashMap<u32, Usage> = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for pid in entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
    {
        let Some(stat) = stat(pid) else { continue };
        if stat.state == "Z" || stat.state == "X" {
            continue;
        }
        let usage = groups.entry(stat.group).or_default();
        usage.cpu_seconds += stat.cpu_ticks as f64 / ticks;
        usage.resident_bytes += stat.rss_pages * page;
    }
    groups
}

/// Scans `/proc` for a member of group `pgid` that is not a zombie.
fn live_members_in_proc(pgid: u32) -> Option<bool> {
    std::fs::metadata("/proc/self/stat").ok()?;
    Some(!group_members(pgid).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_on_path_are_execed_others_are_not() {
        // Which commands are simple is `shoal_procfile::command`'s to test; here: the lookup.
        let path = std::env::var_os("PATH");
        let path = path.as_deref();
        assert_eq!(shell_command("sleep 10", path), "exec sleep 10");
        assert_eq!(
            shell_command("./server -p $PORT", path),
            "exec ./server -p $PORT"
        );
        assert_eq!(
            shell_command("no-such-program-here --x", path),
            "no-such-program-here --x"
        );
        assert_eq!(shell_command("exit 3", path), "exit 3");
        assert_eq!(shell_command("sleep 1", None), "sleep 1");
    }
}
