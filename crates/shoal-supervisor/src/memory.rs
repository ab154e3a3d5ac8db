//! Memory limits (`--memory-limit`): how each instance's memory is measured and bounded.
//!
//! Where shoal may create a memory cgroup (cgroup v1's memory controller, or cgroup v2 with
//! the memory controller enabled for the children of shoal's own cgroup), every instance with
//! a limit runs in a cgroup of its own, `shoal-PID/TYPE.N-RUN` below shoal's cgroup. Once a
//! second, and only while a limit is set, shoal reads the cgroup's working set (its usage less
//! inactive file cache, as Kubernetes counts it): it warns above the limit and, at twice the
//! limit (the restart point), restarts the instance itself, a `web` instance drained first.
//! The cgroup's hard limit (`memory.limit_in_bytes`, `memory.max`) is [`hard_limit`], a
//! quarter of the limit (at least 32 MiB) above the restart point: an instance that grows
//! slowly, as a leak does, reaches the restart point in one of shoal's readings and is
//! restarted gracefully; one that grows faster than shoal reads is ended by the kernel's OOM
//! killer there, however fast it grows. A hard limit at the limit itself would kill the
//! instance before any warning.
//!
//! Elsewhere (no cgroup shoal may create, or `SHOAL_NO_CGROUP=1`), shoal reads the resident
//! memory of the instance's process group from `/proc` once a second, only while a limit is
//! set, warns above the limit and restarts the instance at twice the limit.
//!
//! Cgroups are removed when their instance's run ends and when the formation ends; those left
//! by a shoal that was killed are removed at the next start.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use shoal_procfile::memory::Size;

/// Set to `1` to sample resident memory even where a memory cgroup could be created.
pub const NO_CGROUP: &str = "SHOAL_NO_CGROUP";

/// Which cgroup interface a directory speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The formation's own cgroup directory (`shoal-PID`), below which each limited instance
/// gets one; removed when dropped.
#[derive(Debug)]
pub struct CgroupRoot {
    dir: PathBuf,
    version: Version,
}

impl CgroupRoot {
    /// Creates the formation's cgroup below shoal's own memory cgroup, if there is a memory
    /// controller shoal may use (and [`NO_CGROUP`] is not set). Cgroups left by formations whose
    /// shoal is gone are removed first.
    pub fn create() -> Option<CgroupRoot> {
        if std::env::var_os(NO_CGROUP).is_some_and(|v| !v.is_empty() && v != "0") {
            return None;
        }
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        let (parent, version) = own_memory_cgroup(&membership)?;
        sweep_stale(&parent);
        let dir = parent.join(format!("shoal-{}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        if version == Version::V2 {
            // The instances' cgroups are this one's children: they need the controller too.
            let enabled = fs::write(dir.join("cgroup.subtree_control"), "+memory").is_ok();
            if !enabled {
                let _ = fs::remove_dir(&dir);
                return None;
            }
        }
        Some(CgroupRoot { dir, version })
    }

    /// Where it is, for the log.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A cgroup for one run of an instance whose memory limit is `limit` bytes: its hard limit
    /// at [`hard_limit`].
    pub(crate) fn instance(&self, name: &str, limit: u64) -> io::Result<Cgroup> {
        let dir = self.dir.join(name);
        // A cgroup left by the same name's previous run (its removal failed): its processes
        // are gone, so it can go.
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir)?;
        let cgroup = Cgroup {
            dir,
            version: self.version,
        };
        let limit = hard_limit(limit).to_string();
        let written = match self.version {
            Version::V1 => {
                fs::write(cgroup.dir.join("memory.limit_in_bytes"), &limit).and_then(|()| {
                    // With swap, the limit on memory and swap together, or the instance would
                    // swap instead of being stopped. Absent when swap accounting is off.
                    let memsw = cgroup.dir.join("memory.memsw.limit_in_bytes");
                    match fs::write(&memsw, &limit) {
                        Err(err) if memsw.exists() => Err(err),
                        _ => Ok(()),
                    }
                })
            }
            Version::V2 => fs::write(cgroup.dir.join("memory.max"), &limit).and_then(|()| {
                match fs::write(cgroup.dir.join("memory.swap.max"), "0") {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                    _ => Ok(()),
                }
            }),
        };
        match written {
            Ok(()) => Ok(cgroup),
            Err(err) => {
                cgroup.remove();
                Err(err)
            }
        }
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        remove_tree(&self.dir, Leftovers::Kill);
    }
}

/// Shoal's own memory cgroup directory, from `/proc/self/cgroup`: cgroup v1's memory
/// hierarchy, else cgroup v2's when it has the memory controller.
fn own_memory_cgroup(membership: &str) -> Option<(PathBuf, Version)> {
    let (dir, version) = memory_cgroup_of(membership)?;
    let usable = match version {
        Version::V1 => dir.join("memory.limit_in_bytes").exists(),
        Version::V2 => fs::read_to_string(dir.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")),
    };
    usable.then_some((dir, version))
}

/// Where `/proc/self/cgroup`'s text puts the memory cgroup: the v1 hierarchy that has the
/// memory controller, else the v2 one.
fn memory_cgroup_of(membership: &str) -> Option<(PathBuf, Version)> {
    let v1 = membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    });
    if let Some(path) = v1 {
        let dir = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        return Some((dir, Version::V1));
    }
    let path = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    Some((dir, Version::V2))
}

/// Removes the `shoal-PID` cgroups of shoals that no longer run (killed with SIGKILL: their
/// watchdog killed the instances, but nobody removed the directories).
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shoal-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Only the directories: a shoal in another PID namespace has no `/proc/PID` here
        // although it runs, and removing a cgroup that still holds a process fails harmlessly.
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path(), Leftovers::Keep);
        }
    }
}

/// What [`remove_tree`] does with processes still in a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    /// Kill them first (this shoal's own cgroups).
    Kill,
    /// Leave them, and the cgroup with them (another shoal's).
    Keep,
}

/// Removes a cgroup and the cgroups below it (the directories only: their files are the
/// kernel's).
fn remove_tree(dir: &Path, leftovers: Leftovers) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path(), leftovers);
            }
        }
    }
    if leftovers == Leftovers::Kill {
        let cgroup = Cgroup {
            dir: dir.to_path_buf(),
            version: Version::V1,
        };
        cgroup.kill_all();
    }
    let _ = fs::remove_dir(dir);
}

/// The processes a `cgroup.procs` file lists that this process may signal. The kernel lists a
/// process outside this PID namespace as 0, and `kill(0, …)` would signal this process's own
/// group: such lines, and this process itself, are left out.
fn signalable(procs: &str) -> impl Iterator<Item = i32> + '_ {
    let own = std::process::id() as i32;
    procs
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(move |&pid| pid > 0 && pid != own)
}

/// One run's memory cgroup.
#[derive(Debug)]
pub(crate) struct Cgroup {
    dir: PathBuf,
    version: Version,
}

impl Cgroup {
    /// Opens `cgroup.procs` for the child to write itself into, between fork and exec (so
    /// that nothing it starts escapes the limit).
    pub(crate) fn procs(&self) -> io::Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
    }

    /// The working set: usage less inactive file cache (what the kernel cannot simply drop).
    pub(crate) fn working_set(&self) -> Option<u64> {
        let (usage, inactive) = match self.version {
            Version::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
            Version::V2 => ("memory.current", "inactive_file"),
        };
        let usage: u64 = fs::read_to_string(self.dir.join(usage))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let inactive = self.stat(inactive).unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    }

    fn stat(&self, key: &str) -> Option<u64> {
        field(&fs::read_to_string(self.dir.join("memory.stat")).ok()?, key)
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|text| field(&text, key))
            .unwrap_or(0)
    }

    /// Sends SIGKILL to every process still in the cgroup (those that left the instance's
    /// process group included).
    pub(crate) fn kill_all(&self) {
        let Ok(procs) = fs::read_to_string(self.dir.join("cgroup.procs")) else {
            return;
        };
        for pid in signalable(&procs) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Removes the cgroup; it must hold no process any more. A process that was just killed
    /// may take a moment to leave it.
    pub(crate) fn remove(&self) {
        for _ in 0..100 {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return,
                Err(_) => {
                    self.kill_all();
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }
}

/// What the readings of one run's memory call for: a warning once per crossing of the limit
/// (again only after it went back under), and a restart, asked once, at twice the limit or
/// when the kernel's OOM killer ended a process in its cgroup.
#[derive(Debug)]
pub(crate) struct MemoryWatch {
    limit: u64,
    over: bool,
    asked: bool,
}

impl MemoryWatch {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryWatch {
            limit,
            over: false,
            asked: false,
        }
    }

    /// Notes a reading (`used` bytes; `oom_kills` so far in its cgroup); returns whether to
    /// warn and whether to ask for a restart.
    pub(crate) fn observe(&mut self, used: u64, oom_kills: u64) -> (bool, bool) {
        let over = used > self.limit;
        let warn = over && !self.over;
        self.over = over;
        let restart = !self.asked && (used >= restart_point(self.limit) || oom_kills > 0);
        self.asked |= restart;
        (warn, restart)
    }
}

/// Where the kernel ends an instance whose memory limit is `limit` bytes: a quarter of the
/// limit, at least 32 MiB, above the restart point at twice the limit, so that shoal's reading
/// once a second finds an instance that grows slowly past the restart point before the kernel
/// does (see the module's documentation).
pub(crate) fn hard_limit(limit: u64) -> u64 {
    restart_point(limit).saturating_add((limit / 4).max(32 << 20))
}

/// Where shoal restarts an instance whose memory limit is `limit` bytes: twice the limit.
pub(crate) fn restart_point(limit: u64) -> u64 {
    limit.saturating_mul(2)
}

/// What the log says when the kernel's OOM killer ended an instance (`whom`: `web.1`, or
/// `a process of web.1`) whose memory limit is `limit` bytes.
pub(crate) fn oom_killed(whom: &str, limit: u64) -> String {
    format!(
        "the kernel's OOM killer ended {whom} at {}, past twice its memory limit of {}",
        Size(hard_limit(limit)),
        Size(limit)
    )
}

/// `KEY VALUE` lines (`memory.stat`, `memory.oom_control`, `memory.events`): `key`'s value.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The child's side of [`Cgroup::procs`]: writes `0` (itself) into the open `cgroup.procs`.
/// Runs between fork and exec: only async-signal-safe calls.
pub(crate) fn enter(fd: i32) -> io::Result<()> {
    // SAFETY: write is async-signal-safe; `fd` stays open until exec (it is close-on-exec).
    let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    if written == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_ends_an_instance_above_the_restart_point() {
        let mib = |n: u64| n << 20;
        assert_eq!(hard_limit(mib(64)), mib(128 + 32));
        assert_eq!(hard_limit(mib(1024)), mib(2048 + 256));
        assert_eq!(hard_limit(u64::MAX), u64::MAX);
    }

    #[test]
    fn only_processes_this_one_may_signal_are_killed() {
        let own = std::process::id();
        let procs = format!("0\n4242\n{own}\n-1\nnot a pid\n 17 \n");
        assert_eq!(signalable(&procs).collect::<Vec<_>>(), [4242, 17]);
    }

    #[test]
    fn a_warning_per_crossing_and_one_restart_at_twice_the_limit() {
        let mut watch = MemoryWatch::new(100);
        assert_eq!(watch.observe(50, 0), (false, false));
        assert_eq!(
            watch.observe(100, 0),
            (false, false),
            "at the limit is not over"
        );
        assert_eq!(watch.observe(101, 0), (true, false));
        assert_eq!(watch.observe(150, 0), (false, false), "once per crossing");
        assert_eq!(watch.observe(90, 0), (false, false));
        assert_eq!(watch.observe(120, 0), (true, false), "crossed again");
        assert_eq!(watch.observe(200, 0), (false, true));
        assert_eq!(watch.observe(300, 0), (false, false), "asked once");

        let mut watch = MemoryWatch::new(100);
        assert_eq!(
            watch.observe(30, 1),
            (false, true),
            "the OOM killer ended one of its processes"
        );
    }

    #[test]
    fn finds_the_memory_cgroup_in_either_version() {
        assert_eq!(
            memory_cgroup_of("9:name=systemd:/\n4:cpu,memory:/a/b\n0::/c\n"),
            Some((PathBuf::from("/sys/fs/cgroup/memory/a/b"), Version::V1))
        );
        assert_eq!(
            memory_cgroup_of("0::/user.slice/shoal.service\n"),
            Some((
                PathBuf::from("/sys/fs/cgroup/user.slice/shoal.service"),
                Version::V2
            ))
        );
        assert_eq!(memory_cgroup_of("3:cpu:/\n"), None);
        assert_eq!(
            field("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
    }
}
