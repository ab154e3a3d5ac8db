//! `shoal start --isolate`: every start of every instance runs in a private copy of the app
//! directory, made afresh, so that what one instance writes there no other instance sees and
//! a restart loses — as on separate machines. It is what `shoal verify` does to its
//! formations, brought into everyday work.
//!
//! # How a copy is made
//! Copy-on-write where the kernel lets shoal: an overlay mount whose lower layer is the app
//! directory itself and whose upper layer is the instance's own, empty at every start. Making
//! one takes the same time whatever the size of the app. The mounts live in a mount namespace
//! of shoal's own, entered by [`private_mounts`] while shoal has one thread (as root a mount
//! namespace; otherwise a user namespace with one, mapping the user to itself), and only once
//! a child process has entered the same and mounted a trial overlay (`namespace`). Mounts
//! from outside still reach it, but none made in it leaves it, and the kernel removes them
//! with the namespace once shoal and its instances have exited, even if shoal was killed.
//! Where that is not possible (namespaces refused — the note says which step and, when a
//! setting tells, why —, a path overlayfs cannot be given, or the first mount refused), each
//! start gets a plain copy (as `shoal verify`'s, which are made the same way), with a note
//! when the app directory is over 100 MB.
//!
//! Either way the copy sits where the app directory's surroundings are mirrored (see
//! `copies`), `release` runs in the app directory itself, and a copy is unmounted and removed
//! as soon as its instance's start ends ([`WorkDirs::exited`]), and all when the formation
//! stops. Files edited in the app directory while the formation runs are seen by the
//! instances as long as they have not written the same file (overlayfs does not promise
//! more); every restart starts from the app directory as it is then. A symlink is copied as
//! it is: one that leads out of the app directory (`uploads -> /srv/uploads`) is named when
//! the formation starts (`links`), as what is written through it is shared.
//!
//! # What is reported
//! The upper layer (or the plain copy) is watched with inotify. The first write of an
//! instance into a directory of its copy is reported at once, as a `system` line naming the
//! instance and the file — at most once per directory per instance, and at most
//! [`LINES_PER_MINUTE`] such lines a minute in all (then one line says how many were held
//! back). Every file an instance created, changed or deleted is counted, once per run of the
//! instance, for `shoal ps` ([`Isolation::local_writes`]). Python's bytecode caches
//! (`__pycache__`) are not counted, as `shoal verify` does not count them. File names are the
//! app's: every line shows them escaped (`shown`). When the kernel drops events (its queue
//! overflowed), each instance is told once, and every copy is looked through again.

mod links;
mod namespace;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_procfile::InstanceName;
use shoal_supervisor::scratch::remove_all;
use shoal_supervisor::{Log, WorkDirs};
use tokio::io::unix::AsyncFd;

use crate::copies::{Budget, Changes, How, IGNORED, Manifest, changed_since, copy_tree, mirror};
use crate::shown::shown;
use namespace::cstring;
pub use namespace::{Namespace, private_mounts};
pub(crate) use namespace::{mount_overlay, overlay_path, unmount};

/// At most this many lines about first writes are shown a minute, for the whole formation.
pub const LINES_PER_MINUTE: usize = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// A plain copy of an app directory larger than this is worth a note: it is made at every
/// start of every instance.
const LARGE_BYTES: u64 = 100 * 1000 * 1000;

/// The [`WorkDirs`] provider of `shoal start --isolate`. Shared with the watcher
/// ([`Isolation::watch`]) and `shoal ps` ([`Isolation::local_writes`]); [`Isolation::finish`]
/// removes every copy.
pub struct Isolation {
    app_dir: PathBuf,
    root: PathBuf,
    /// Overlay until a mount fails; then plain copies.
    how: Mutex<How>,
    log: Log,
    inotify: OwnedFd,
    state: Mutex<State>,
}

impl std::fmt::Debug for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolation")
            .field("app_dir", &self.app_dir)
            .field("root", &self.root)
            .field("how", &self.how())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Each instance's current copy.
    copies: HashMap<InstanceName, PrivateCopy>,
    /// What each inotify watch is on.
    watches: HashMap<i32, Watched>,
    generation: u64,
    /// The files counted in each run (by generation).
    written: HashSet<(u64, PathBuf)>,
    /// Files counted, by instance name, over all its runs.
    counts: HashMap<String, u64>,
    /// The directories already reported, by instance name.
    reported: HashSet<(String, PathBuf)>,
    limiter: Limiter,
    large_noted: bool,
    /// The instances told that the kernel dropped events (once each).
    overflow_noted: HashSet<String>,
    /// Copies being unmounted and removed in the background.
    going: Vec<std::thread::JoinHandle<()>>,
}

struct PrivateCopy {
    /// Everything of this copy: its mirror, its upper and work layers.
    frame: PathBuf,
    /// Where the instance runs.
    dir: PathBuf,
    /// What is watched: an overlay's upper layer, or the plain copy.
    watched: PathBuf,
    /// A plain copy's files as they were made (`None` for an overlay, whose upper layer
    /// holds only what was written).
    made: Option<Manifest>,
    mounted: bool,
    generation: u64,
}

#[derive(Clone)]
struct Watched {
    instance: InstanceName,
    generation: u64,
    dir: PathBuf,
    /// `dir` relative to the copy of the app directory.
    rel: PathBuf,
}

/// At most [`LINES_PER_MINUTE`] lines in a window of a minute that begins with its first
/// line; what is held back is said when the window ends.
#[derive(Default)]
struct Limiter {
    window: Option<Instant>,
    shown: usize,
    held: usize,
}

impl Limiter {
    fn allow(&mut self, now: Instant) -> bool {
        if self.window.is_none_or(|start| now >= start + WINDOW) {
            self.window = Some(now);
            self.shown = 0;
        }
        if self.shown < LINES_PER_MINUTE {
            self.shown += 1;
            true
        } else {
            self.held += 1;
            false
        }
    }

    /// When the lines held back are to be said.
    fn due(&self) -> Option<Instant> {
        (self.held > 0).then(|| self.window.map(|start| start + WINDOW))?
    }

    fn take_held(&mut self) -> usize {
        std::mem::take(&mut self.held)
    }
}

const WATCH_MASK: u32 = libc::IN_CREATE
    | libc::IN_MODIFY
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW
    | libc::IN_EXCL_UNLINK;

impl Isolation {
    /// Private copies of `app_dir` under `root` (made afresh: what a killed shoal left there
    /// is removed), copy-on-write when `namespace` and the kernel allow it. Says on `log` how
    /// the copies are made.
    pub fn new(
        app_dir: &Path,
        root: &Path,
        namespace: &Namespace,
        log: Log,
    ) -> io::Result<Arc<Isolation>> {
        remove_all(root)?;
        std::fs::create_dir_all(root)?;
        // `private_mounts` mounted a trial overlay on a tmpfs; whether the kernel takes one
        // of the app directory's file system is found at the first start.
        let how = How::first(app_dir, root, namespace);
        // Not nix's `Inotify`: its reader takes 4 KiB of events a call, and a burst of writes
        // is read here in gulps of 64 KiB.
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        match &how {
            How::Overlay => log.system(format!(
                "--isolate: every instance runs in a copy-on-write copy of `{}`, made afresh at every start",
                shown(app_dir)
            )),
            How::Copy(why) => log.system(format!(
                "--isolate: every instance runs in a copy of `{}`, made afresh at every start (copy-on-write is not possible: {why})",
                shown(app_dir)
            )),
        }
        links::report_leaving(app_dir, &log);
        Ok(Arc::new(Isolation {
            app_dir: app_dir.to_path_buf(),
            root: root.to_path_buf(),
            how: Mutex::new(how),
            log,
            inotify,
            state: Mutex::new(State::default()),
        }))
    }

    /// Whether copies are copy-on-write (overlay mounts) rather than plain copies.
    pub fn copy_on_write(&self) -> bool {
        self.how() == How::Overlay
    }

    fn how(&self) -> How {
        self.how.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From now on, plain copies: the kernel refused an overlay.
    fn fall_back(&self, err: &io::Error) {
        let why = format!("cannot mount an overlay of it: {err}");
        let mut how = self.how.lock().unwrap_or_else(|e| e.into_inner());
        if *how == How::Overlay {
            self.log.system(format!(
                "--isolate: every instance runs in a copy of `{}` from now on, made afresh at every start (copy-on-write is not possible: {why})",
                shown(&self.app_dir)
            ));
            *how = How::Copy(why);
        }
    }

    /// Handles the events already queued, so that none of a copy about to go is lost.
    fn drain(&self) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: the buffer is valid for writes of its length; the descriptor is
            // non-blocking.
            let read = unsafe {
                libc::read(
                    self.inotify.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            if read <= 0 {
                return;
            }
            self.events(&buffer[..read as usize]);
        }
    }

    /// Unmounts and removes `name`'s copy, after handling the events it left.
    fn remove_copy(&self, name: &InstanceName) {
        self.drain();
        let old = {
            let mut state = self.lock();
            let old = state.copies.remove(name);
            if let Some(old) = &old {
                state.watches.retain(|_, w| w.generation != old.generation);
                state
                    .written
                    .retain(|(generation, _)| *generation != old.generation);
            }
            old
        };
        let Some(old) = old else { return };
        // Unmounting waits for the kernel (tens of ms, more on a busy machine), and a plain
        // copy takes a while to remove: out of the way under another name, the copy goes in
        // the background and the instance restarts meanwhile. `finish` waits for it.
        let gone = self.root.join(format!(".gone-{}", old.generation));
        let moved = std::fs::rename(&old.frame, &gone).ok().and_then(|()| {
            Some(PrivateCopy {
                dir: gone.join(old.dir.strip_prefix(&old.frame).ok()?),
                frame: gone.clone(),
                watched: PathBuf::new(),
                made: None,
                mounted: old.mounted,
                generation: old.generation,
            })
        });
        let Some(moved) = moved else {
            return blocking(|| tear_down(&old));
        };
        let removing = std::thread::Builder::new()
            .name("shoal-isolate".into())
            .spawn(move || tear_down(&moved));
        if let Ok(removing) = removing {
            let mut state = self.lock();
            state.going.retain(|going| !going.is_finished());
            state.going.push(removing);
        }
    }

    /// How many files `instance` (`web.1`) has created, changed or deleted in its copies of
    /// the app directory since the formation started, each counted once per run.
    pub fn local_writes(&self, instance: &str) -> u64 {
        let state = self.lock();
        state.counts.get(instance).copied().unwrap_or(0)
    }

    /// Reports writes as they happen, until dropped.
    pub async fn watch(self: Arc<Self>) {
        let Ok(fd) = self.inotify.try_clone() else {
            return;
        };
        // SAFETY: the `OwnedFd` stays open, and refers to the same inotify instance, for as
        // long as the `AsyncFd` owns it.
        let registered =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
        let Ok(fd) = registered else {
            return;
        };
        // Room for many events: each is 16 bytes and a name of at most 255.
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let due = self.lock().limiter.due();
            let held_back = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ready = fd.readable() => {
                    let Ok(mut ready) = ready else { return };
                    // SAFETY: the buffer is valid for writes of its length.
                    let read = unsafe {
                        libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len())
                    };
                    if read < 0 {
                        let err = io::Error::last_os_error();
                        if err.kind() == io::ErrorKind::WouldBlock {
                            ready.clear_ready();
                            continue;
                        }
                        return;
                    }
                    self.events(&buffer[..read as usize]);
                }
                () = held_back => {
                    let held = self.lock().limiter.take_held();
                    if held > 0 {
                        self.log.system(format!(
                            "{held} more first {} into copies of the app directory in the last minute (at most {LINES_PER_MINUTE} such lines are shown a minute); `shoal ps --json` counts each instance's as `local_writes`",
                            if held == 1 { "write" } else { "writes" }
                        ));
                    }
                }
            }
        }
    }

    /// A guard that calls [`Isolation::finish`] when dropped, for the ways out of `shoal
    /// start` that do not reach its end.
    pub fn finish_on_drop(self: &Arc<Self>) -> FinishOnDrop {
        FinishOnDrop(self.clone())
    }

    /// Unmounts and removes every copy. Called once the formation has stopped; calling it
    /// again does nothing.
    pub fn finish(&self) {
        let (copies, going) = {
            let mut state = self.lock();
            state.watches.clear();
            let copies: Vec<PrivateCopy> = state.copies.drain().map(|(_, copy)| copy).collect();
            (copies, std::mem::take(&mut state.going))
        };
        for copy in copies {
            tear_down(&copy);
        }
        for going in going {
            let _ = going.join();
        }
        let _ = remove_all(&self.root);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a copy in `frame`, and says how many bytes a plain copy copied.
    fn make(&self, frame: &Path, generation: u64) -> io::Result<(PrivateCopy, Option<u64>)> {
        let dir = mirror(&self.app_dir, &frame.join("root"))?;
        if self.how() == How::Overlay {
            let upper = frame.join("upper");
            let work = frame.join("work");
            std::fs::create_dir(&upper)?;
            std::fs::create_dir(&work)?;
            match mount_overlay(&self.app_dir, &upper, &work, &dir) {
                Ok(()) => {
                    let copy = PrivateCopy {
                        frame: frame.to_path_buf(),
                        dir,
                        watched: upper,
                        made: None,
                        mounted: true,
                        generation,
                    };
                    return Ok((copy, None));
                }
                Err(err) => self.fall_back(&err),
            }
        }
        let mut budget = Budget::default();
        let mut made = Manifest::new();
        copy_tree(
            &self.app_dir,
            &dir,
            Path::new(""),
            &self.root,
            &mut made,
            &mut budget,
        )?;
        let copy = PrivateCopy {
            frame: frame.to_path_buf(),
            dir: dir.clone(),
            watched: dir,
            made: Some(made),
            mounted: false,
            generation,
        };
        Ok((copy, Some(budget.bytes)))
    }

    /// Watches `dir` and the directories below it; with `report`, files already there are
    /// writes (a directory the instance just made).
    fn watch_tree(&self, state: &mut State, at: Watched, report: bool) {
        let Ok(path) = cstring(at.dir.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: the descriptor is open and `path` is NUL-terminated.
        let wd =
            unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), path.as_ptr(), WATCH_MASK) };
        if wd < 0 {
            return;
        }
        state.watches.insert(wd, at.clone());
        let Ok(entries) = std::fs::read_dir(&at.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name == IGNORED {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let below = Watched {
                    dir: entry.path(),
                    rel: at.rel.join(&name),
                    ..at.clone()
                };
                self.watch_tree(state, below, report);
            } else if report {
                let change = self.change_of(&entry.path(), false);
                self.record(state, &at, &name, change);
            }
        }
    }

    /// Whether the entry at `path` (just created, or `gone`) is a write or a deletion as the
    /// instance sees it. In an overlay's upper layer, a deletion is a whiteout: a character
    /// device numbered 0/0.
    fn change_of(&self, path: &Path, gone: bool) -> Change {
        if gone {
            return Change::Deleted;
        }
        if self.how() == How::Overlay
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_char_device()
            && meta.rdev() == 0
        {
            return Change::Deleted;
        }
        Change::Wrote
    }

    fn events(&self, mut buffer: &[u8]) {
        let header = std::mem::size_of::<libc::inotify_event>();
        let mut state = self.lock();
        let mut overflowed = false;
        while buffer.len() >= header {
            // SAFETY: the kernel wrote whole events; `read_unaligned` copies the header out
            // whatever the buffer's alignment.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buffer.as_ptr().cast()) };
            let end = (header + event.len as usize).min(buffer.len());
            let name = &buffer[header..end];
            let name =
                OsStr::from_bytes(&name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())]);
            buffer = &buffer[end..];
            if event.mask & libc::IN_Q_OVERFLOW != 0 {
                overflowed = true;
                continue;
            }
            if event.mask & libc::IN_IGNORED != 0 {
                state.watches.remove(&event.wd);
                continue;
            }
            let Some(at) = state.watches.get(&event.wd).cloned() else {
                continue;
            };
            if name.is_empty() || name == IGNORED {
                continue;
            }
            let path = at.dir.join(name);
            if event.mask & libc::IN_ISDIR != 0 {
                if event.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                    let below = Watched {
                        dir: path,
                        rel: at.rel.join(name),
                        ..at.clone()
                    };
                    self.watch_tree(&mut state, below, true);
                }
                continue;
            }
            let gone = event.mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0;
            // Overlayfs makes a whiteout in its work directory and renames it into place.
            let made = event.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0;
            let change = if made || gone {
                self.change_of(&path, gone)
            } else {
                Change::Wrote
            };
            self.record(&mut state, &at, name, change);
        }
        if overflowed {
            // Listing a plain copy of 20,000 files takes a while: the runtime's other tasks
            // move to another worker meanwhile.
            blocking(|| self.look_again(&mut state));
        }
    }

    /// The kernel dropped events (an inotify instance queues at most
    /// `fs.inotify.max_queued_events`): each instance is told once that its report may miss
    /// some, and every copy is looked through again — an overlay's upper layer holds exactly
    /// what its instance wrote, and a plain copy is compared with its files as they were made —
    /// so that the count is right again and new directories are watched. A file made and
    /// removed while events were dropped stays unseen.
    fn look_again(&self, state: &mut State) {
        // Each copy's top, and a plain copy's files changed since it was made.
        let copies: Vec<(Watched, Option<Changes>)> = state
            .copies
            .iter()
            .map(|(name, copy)| {
                let top = Watched {
                    instance: name.clone(),
                    generation: copy.generation,
                    dir: copy.watched.clone(),
                    rel: PathBuf::new(),
                };
                let changed = copy
                    .made
                    .as_ref()
                    .map(|made| changed_since(&copy.watched, made));
                (top, changed)
            })
            .collect();
        let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .map(|text| format!(" ({})", text.trim()))
            .unwrap_or_default();
        for (top, changed) in copies {
            let instance = top.instance.to_string();
            if state.overflow_noted.insert(instance.clone()) {
                self.log.system(format!(
                    "some writes of {instance} may not have been reported: more file events came at once than the kernel queues (`fs.inotify.max_queued_events`{limit}); its copy was looked through again, and `local_writes` counts what it holds now, but a file made and removed meanwhile was missed"
                ));
            }
            // The upper layer's files are all writes; a plain copy's are compared below.
            self.watch_tree(state, top.clone(), changed.is_none());
            for (path, change) in changed.unwrap_or_default() {
                let change = match change {
                    "deleted" => Change::Deleted,
                    _ => Change::Wrote,
                };
                let at = Watched {
                    rel: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    ..top.clone()
                };
                let name = path.file_name().unwrap_or_default();
                self.record(state, &at, name, change);
            }
        }
    }

    /// Counts a write, and reports it if it is the instance's first in that directory.
    fn record(&self, state: &mut State, at: &Watched, name: &OsStr, change: Change) {
        let rel = at.rel.join(name);
        if !state.written.insert((at.generation, rel.clone())) {
            return;
        }
        let instance = at.instance.to_string();
        *state.counts.entry(instance.clone()).or_default() += 1;
        if !state.reported.insert((instance.clone(), at.rel.clone())) {
            return;
        }
        if !state.limiter.allow(Instant::now()) {
            return;
        }
        let file = shown(&rel);
        self.log.system(match change {
            Change::Wrote => format!(
                "{instance} wrote `{file}` in its copy of the app directory: no other instance sees it and a restart loses it — keep it in the database or object storage; use `$SHOAL_SCRATCH` for a file needed only during this request"
            ),
            Change::Deleted => format!(
                "{instance} deleted `{file}` in its copy of the app directory: the other instances still have it and a restart brings it back — keep what changes in the database or object storage"
            ),
        });
    }
}

/// Removes every copy when dropped (see [`Isolation::finish_on_drop`]).
#[derive(Debug)]
pub struct FinishOnDrop(Arc<Isolation>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Wrote,
    Deleted,
}

impl WorkDirs for Isolation {
    fn exited(&self, name: &InstanceName, _scratch: &Path) {
        self.remove_copy(name);
    }

    fn prepare(&self, name: &InstanceName) -> io::Result<PathBuf> {
        // `release` prepares the app for every instance (migrations, built assets): it runs in
        // the app directory itself.
        if name.kind == shoal_procfile::plan::RELEASE {
            return Ok(self.app_dir.clone());
        }
        // Normally gone already (see `exited`).
        self.remove_copy(name);
        let generation = {
            let mut state = self.lock();
            state.generation += 1;
            state.generation
        };
        let frame = self.root.join(name.to_string());
        remove_all(&frame)?;
        // A plain copy of a large app takes a while: let the runtime's other tasks (the log,
        // the router) move to another worker meanwhile.
        let made = blocking(|| self.make(&frame, generation));
        let (copy, copied) = made.map_err(|err| {
            let _ = remove_all(&frame);
            io::Error::new(
                err.kind(),
                format!(
                    "cannot make a private copy of the app directory `{}` in `{}`: {err}",
                    shown(&self.app_dir),
                    shown(&frame)
                ),
            )
        })?;
        let mut state = self.lock();
        if let (Some(bytes), How::Copy(why)) = (copied, &self.how())
            && bytes > LARGE_BYTES
            && !state.large_noted
        {
            state.large_noted = true;
            self.log.system(format!(
                "--isolate copies {} MB at every start of every instance (copy-on-write is not possible: {why}); a smaller app directory (`-d`) starts faster",
                bytes / 1_000_000
            ));
        }
        let at = Watched {
            instance: name.clone(),
            generation,
            dir: copy.watched.clone(),
            rel: PathBuf::new(),
        };
        self.watch_tree(&mut state, at, false);
        let dir = copy.dir.clone();
        state.copies.insert(name.clone(), copy);
        Ok(dir)
    }
}

/// Unmounts and removes a copy.
fn tear_down(copy: &PrivateCopy) {
    if copy.mounted {
        let _ = unmount(&copy.dir);
    }
    let _ = remove_all(&copy.frame);
}

/// A plain copy of a large app takes a while: the runtime's other tasks (the log, the router)
/// move to another worker meanwhile.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_so_many_lines_a_minute_and_the_rest_is_said_when_it_ends() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        for _ in 0..LINES_PER_MINUTE {
            assert!(limiter.allow(start));
        }
        assert_eq!(limiter.due(), None);
        assert!(!limiter.allow(start + Duration::from_secs(10)));
        assert!(!limiter.allow(start + Duration::from_secs(59)));
        assert_eq!(limiter.due(), Some(start + WINDOW));
        assert_eq!(limiter.take_held(), 2);
        assert_eq!(limiter.due(), None);
        // A new minute begins with the next line.
        assert!(limiter.allow(start + WINDOW));
    }
}
