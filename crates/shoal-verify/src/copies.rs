//! Private copies of the app directory, one per instance start: what one instance writes to
//! its working directory no other instance sees, and a restart starts from a fresh copy — as
//! on separate machines, where a restart (a deploy, a move to another host) brings back the
//! app as it was built. Absolute paths are untouched: a SQLite file or an upload directory
//! named by an absolute path in the environment stays shared, as a backing service is.
//!
//! A copy is copy-on-write where the kernel lets shoal, as for `shoal start --isolate` (see
//! [`crate::isolate`]): an overlay mount whose lower layer is the app directory and whose
//! upper layer is the instance's own, empty at every start, in the mount namespace
//! [`crate::isolate::private_mounts`] gave shoal. Making one takes the same time whatever
//! the size of the app. Otherwise (namespaces refused, a path overlayfs cannot be given, a
//! mount refused) it is a plain copy, and the report says why ([`CopiesMade`]).
//!
//! A copy sits where the app directory's surroundings are mirrored, up to three levels up,
//! with links to the originals: a command such as `../../target/release/app` finds from a
//! copy what it finds from the app directory. What is outside the app directory is shared, as
//! an absolute path is.
//!
//! When the copy is replaced or the run ends, the files the instance created, changed or
//! deleted are recorded, so that the report can say *which* local files carried state: a
//! plain copy's files are listed when it is made and compared with what it holds then; an
//! overlay's upper layer holds exactly what was written, and only the paths found there are
//! compared, in the overlay, with the app directory ([`overlay_changes`]). Either way a file
//! is changed when its size or modification time is. Python's bytecode caches
//! (`__pycache__`) are not counted, nor is `.git` (a plain copy links to the original).
//!
//! The scratch directory (`SHOAL_SCRATCH`, `TMPDIR`) is observed too: it is empty at every
//! start, verify looks into it after every request ([`PrivateCopies::observe_scratch`]), and
//! the supervisor tells the provider when a start ends, before emptying it. Every file seen
//! there during a start is recorded once (at most [`MAX_SCRATCH_FILES`] per start) — also one
//! that a later request deleted, as a sign-out deletes a session file. A Django site with file
//! sessions keeps them there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::SystemTime;

use serde::Serialize;
use shoal_procfile::InstanceName;
use shoal_supervisor::WorkDirs;
use shoal_supervisor::scratch::remove_all;

use crate::isolate::{Namespace, blocking, mount_overlay, overlay_path, unmount};
use crate::shown::shown;

/// Directories whose writes are neither reported nor counted: an app's own bytecode caches.
pub(crate) const IGNORED: &str = "__pycache__";

/// Copies larger than this are refused: the app directory is copied at every instance start.
const MAX_FILES: usize = 20_000;
const MAX_BYTES: u64 = 512 * 1024 * 1024;
/// How many levels above the app directory are mirrored around each copy.
const MIRRORED_LEVELS: usize = 3;
/// A directory above the app with more entries than this is not mirrored (a busy `/tmp`).
const MAX_MIRRORED_ENTRIES: usize = 1000;
/// Files recorded of what one start of an instance kept in its scratch directory: a listing
/// runs after every request and before an exit is reported, so it must stay short.
const MAX_SCRATCH_FILES: usize = 100;

/// A file an instance created, changed or deleted in its working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalWrite {
    /// The run: `baseline 1`, `round 2`…
    pub run: String,
    pub instance: String,
    /// Relative to the app directory (bytes that are not UTF-8 as U+FFFD).
    pub path: String,
    /// `created`, `changed` or `deleted`.
    pub change: &'static str,
    /// `path` as a line of text may show it (see [`shown`]).
    #[serde(skip)]
    shown: String,
}

impl LocalWrite {
    pub fn new(run: &str, instance: &str, path: &Path, change: &'static str) -> LocalWrite {
        LocalWrite {
            run: run.to_owned(),
            instance: instance.to_owned(),
            path: path.to_string_lossy().into_owned(),
            change,
            shown: shown(path),
        }
    }

    /// The path as a line of text may show it: the name is the app's, and a newline or an
    /// escape sequence in it is escaped (`\n`, `\u{1b}`), as are bytes that are not UTF-8.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// How copy-on-write copies are made: as overlay mounts, or as plain copies because they
/// cannot be (why). Shared with `shoal start --isolate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum How {
    Overlay,
    /// A plain copy, because copy-on-write is not possible here: why.
    Copy(String),
}

impl How {
    /// Copy-on-write if `namespace` allows it and overlayfs can be given the app directory
    /// and the directory of the copies.
    pub(crate) fn first(app_dir: &Path, root: &Path, namespace: &Namespace) -> How {
        match &namespace.0 {
            Err(why) => How::Copy(why.clone()),
            Ok(()) => match [app_dir, root].into_iter().try_for_each(overlay_path) {
                Ok(()) => How::Overlay,
                Err(err) => How::Copy(err.to_string()),
            },
        }
    }
}

/// How a verify run's copies were made, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopiesMade {
    /// `copy-on-write` (overlay mounts) or `plain`.
    pub how: &'static str,
    /// Why copy-on-write was not possible, for plain copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The bytes of the app directory a plain copy copied (the last one made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<u64>,
}

impl CopiesMade {
    /// A note for the report when copies were plain: the run was slower than it had to be.
    pub(crate) fn note(&self) -> Option<String> {
        let why = self.why.as_ref()?;
        let size = self
            .bytes_copied
            .filter(|bytes| *bytes >= 1_000_000)
            .map(|bytes| format!(" ({} MB copied at every start)", bytes / 1_000_000))
            .unwrap_or_default();
        Some(format!(
            "every instance ran in a plain copy of the app directory{size}, as copy-on-write is not possible: {why}"
        ))
    }
}

pub(crate) type Manifest = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;
/// Files created, changed or deleted (relative paths), with `created`, `changed` or `deleted`.
pub(crate) type Changes = Vec<(PathBuf, &'static str)>;

/// What the instances of one run left on local disk.
#[derive(Debug, Default, Clone)]
pub(crate) struct Writes {
    /// Created, changed or deleted in their copies of the app directory.
    pub(crate) app: Vec<LocalWrite>,
    /// Seen in their scratch directories between requests or when a start ended, before
    /// they were emptied (all `created`: a scratch directory is empty at every start).
    pub(crate) scratch: Vec<LocalWrite>,
}

/// The [`WorkDirs`] provider that gives every start a fresh copy of the app directory.
#[derive(Debug)]
pub(crate) struct PrivateCopies {
    app_dir: PathBuf,
    root: PathBuf,
    /// Copy-on-write until a mount is refused; then plain copies.
    how: Mutex<How>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    run: String,
    /// Each instance's current copy.
    copies: HashMap<InstanceName, Copy>,
    /// Copies set aside so far, for their names.
    set_aside: u64,
    /// Copies being unmounted and removed in the background.
    going: Vec<JoinHandle<()>>,
    /// The bytes the last plain copy copied.
    bytes_copied: Option<u64>,
    writes: Vec<LocalWrite>,
    /// The files seen so far in each instance's scratch directory, since its current start.
    scratch_seen: HashMap<InstanceName, BTreeSet<PathBuf>>,
    scratch_writes: Vec<LocalWrite>,
}

impl State {
    /// Records the files `name` kept in its scratch directory during the start that ended.
    fn scratch_ended(&mut self, name: &InstanceName, last: Vec<PathBuf>) {
        let mut seen = self.scratch_seen.remove(name).unwrap_or_default();
        seen.extend(last);
        for path in seen.into_iter().take(MAX_SCRATCH_FILES) {
            let write = LocalWrite::new(&self.run, &name.to_string(), &path, "created");
            // Seen again by a look between the end and the emptying.
            if !self.scratch_writes.contains(&write) {
                self.scratch_writes.push(write);
            }
        }
    }
}

/// An instance's current copy.
#[derive(Debug)]
struct Copy {
    /// Everything of this copy: its mirror, an overlay's upper and work layers.
    frame: PathBuf,
    /// Where the instance runs.
    dir: PathBuf,
    made: Made,
}

#[derive(Debug)]
enum Made {
    /// An overlay mounted on `dir`: its upper layer holds what the instance wrote.
    Overlay { upper: PathBuf },
    /// A plain copy, and its files as they were made.
    Plain(Manifest),
}

impl PrivateCopies {
    /// Copies of `app_dir` under `root` (which must exist), copy-on-write when `namespace`
    /// and the kernel allow it.
    pub(crate) fn new(app_dir: &Path, root: &Path, namespace: &Namespace) -> PrivateCopies {
        let how = if root.starts_with(app_dir) {
            // An overlay of the app directory would show every copy's layers to every other.
            How::Copy(format!(
                "the directory of the copies, `{}`, is inside the app directory",
                shown(root)
            ))
        } else {
            How::first(app_dir, root, namespace)
        };
        PrivateCopies {
            app_dir: app_dir.to_path_buf(),
            root: root.to_path_buf(),
            how: Mutex::new(how),
            state: Mutex::new(State::default()),
        }
    }

    /// How the copies are made (the last ones, if a mount was refused half-way).
    pub(crate) fn made(&self) -> CopiesMade {
        let how = self.how.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match how {
            How::Overlay => CopiesMade {
                how: "copy-on-write",
                why: None,
                bytes_copied: None,
            },
            How::Copy(why) => CopiesMade {
                how: "plain",
                why: Some(why),
                bytes_copied: self.lock().bytes_copied,
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names the run whose writes are recorded from now on.
    pub(crate) fn begin_run(&self, run: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).run = run.to_owned();
    }

    /// Records the writes of every copy still in place (the formation has stopped), removes
    /// every copy, and returns the writes of the current run, in the copies and in the
    /// scratch directories.
    pub(crate) fn end_run(&self) -> Writes {
        let (copies, run) = {
            let mut state = self.lock();
            let copies: Vec<(InstanceName, Copy)> = state.copies.drain().collect();
            (copies, state.run.clone())
        };
        for (name, copy) in copies {
            let found = blocking(|| self.changes(&copy, &run, &name));
            self.lock().writes.extend(found);
            self.set_aside(copy);
        }
        // Every copy is gone before the next formation starts, and before the run ends.
        let going = std::mem::take(&mut self.lock().going);
        blocking(|| going.into_iter().for_each(|going| drop(going.join())));
        let mut state = self.lock();
        // Instances whose end was not reported (a formation that had to be killed).
        let unended: Vec<InstanceName> = state.scratch_seen.keys().cloned().collect();
        for name in unended {
            state.scratch_ended(&name, Vec::new());
        }
        let of_run =
            |writes: &[LocalWrite]| writes.iter().filter(|w| w.run == run).cloned().collect();
        Writes {
            app: of_run(&state.writes),
            scratch: of_run(&state.scratch_writes),
        }
    }

    /// Looks at what instance `name` keeps in its scratch directory `scratch` now.
    pub(crate) fn observe_scratch(&self, name: &InstanceName, scratch: &Path) {
        let mut now = Vec::new();
        left_in(scratch, Path::new(""), &mut now);
        if now.is_empty() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seen = state.scratch_seen.entry(name.clone()).or_default();
        for path in now {
            if seen.len() >= MAX_SCRATCH_FILES {
                break;
            }
            seen.insert(path);
        }
    }

    /// What changed in `copy` since it was made, as writes of `name` in `run`.
    fn changes(&self, copy: &Copy, run: &str, name: &InstanceName) -> Vec<LocalWrite> {
        let found = match &copy.made {
            Made::Plain(manifest) => changed_since(&copy.dir, manifest),
            Made::Overlay { upper } => overlay_changes(upper, &self.app_dir, &copy.dir),
        };
        let instance = name.to_string();
        found
            .into_iter()
            .map(|(path, change)| LocalWrite::new(run, &instance, &path, change))
            .collect()
    }

    /// Makes a fresh copy in `frame`, in a fresh mirror of the app's surroundings.
    fn make(&self, frame: &Path) -> io::Result<Copy> {
        remove_all(frame)?;
        let dir = mirror(&self.app_dir, &frame.join("root"))?;
        let overlay = *self.how.lock().unwrap_or_else(|e| e.into_inner()) == How::Overlay;
        if overlay {
            let upper = frame.join("upper");
            let work = frame.join("work");
            std::fs::create_dir(&upper)?;
            std::fs::create_dir(&work)?;
            match mount_overlay(&self.app_dir, &upper, &work, &dir) {
                Ok(()) => {
                    return Ok(Copy {
                        frame: frame.to_path_buf(),
                        dir,
                        made: Made::Overlay { upper },
                    });
                }
                // From now on, plain copies; the report says why.
                Err(err) => {
                    *self.how.lock().unwrap_or_else(|e| e.into_inner()) =
                        How::Copy(format!("cannot mount an overlay of it: {err}"));
                }
            }
        }
        let mut manifest = Manifest::new();
        let mut budget = Budget::default();
        copy_tree(
            &self.app_dir,
            &dir,
            Path::new(""),
            &self.root,
            &mut manifest,
            &mut budget,
        )?;
        self.lock().bytes_copied = Some(budget.bytes);
        Ok(Copy {
            frame: frame.to_path_buf(),
            dir,
            made: Made::Plain(manifest),
        })
    }

    /// Records what `name`'s current copy holds that the app did not, and removes the copy.
    fn replace(&self, name: &InstanceName) {
        let (old, run) = {
            let mut state = self.lock();
            (state.copies.remove(name), state.run.clone())
        };
        let Some(old) = old else { return };
        let found = self.changes(&old, &run, name);
        self.lock().writes.extend(found);
        self.set_aside(old);
    }

    /// Removes `copy` in the background, out of the way under another name so that a new
    /// copy can take its place at once: unmounting waits for the kernel (tens of
    /// milliseconds, more on a busy machine), and a plain copy takes a while to remove.
    /// [`PrivateCopies::end_run`] waits for it.
    fn set_aside(&self, copy: Copy) {
        let mounted = matches!(copy.made, Made::Overlay { .. });
        let gone = {
            let mut state = self.lock();
            state.set_aside += 1;
            self.root.join(format!(".gone-{}", state.set_aside))
        };
        let moved = std::fs::rename(&copy.frame, &gone)
            .ok()
            .and_then(|()| Some(gone.join(copy.dir.strip_prefix(&copy.frame).ok()?)));
        let Some(dir) = moved else {
            return tear_down(&copy.frame, &copy.dir, mounted);
        };
        let (frame, at) = (gone.clone(), dir.clone());
        match std::thread::Builder::new()
            .name("shoal-copies".into())
            .spawn(move || tear_down(&frame, &at, mounted))
        {
            Ok(removing) => {
                let mut state = self.lock();
                state.going.retain(|going| !going.is_finished());
                state.going.push(removing);
            }
            Err(_) => tear_down(&gone, &dir, mounted),
        }
    }
}

/// Unmounts a copy mounted on `dir` and removes everything of it, `frame`.
fn tear_down(frame: &Path, dir: &Path, mounted: bool) {
    if mounted {
        let _ = unmount(dir);
    }
    let _ = remove_all(frame);
}

/// Unmounts every copy-on-write copy left mounted under `dir` (a run that ended with an
/// error before its copies were removed), so that `dir` can be removed. The mounts are in
/// shoal's own mount namespace and would vanish with it, but their mount points would stay.
pub(crate) fn unmount_under(dir: &Path) {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // The mount point is the fifth field, with space, tab, newline and `\` as octal escapes;
    // the deepest first.
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in points {
        let _ = unmount(&point);
    }
}

fn unescape_octal(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

impl WorkDirs for PrivateCopies {
    fn prepare(&self, name: &InstanceName) -> io::Result<PathBuf> {
        // `release` prepares the app for every instance (migrations, built assets): it runs in
        // the app directory itself, before any copy is made.
        if name.kind == shoal_procfile::plan::RELEASE {
            return Ok(self.app_dir.clone());
        }
        // A plain copy of a large app takes a while: the runtime's other tasks move to another
        // worker meanwhile.
        blocking(|| self.replace(name));
        let frame = self.root.join(name.to_string());
        let copy = blocking(|| self.make(&frame)).map_err(|err| {
            let _ = remove_all(&frame);
            io::Error::new(
                err.kind(),
                format!(
                    "cannot copy the app directory `{}` to `{}`: {err}",
                    shown(&self.app_dir),
                    shown(&frame)
                ),
            )
        })?;
        let dir = copy.dir.clone();
        self.lock().copies.insert(name.clone(), copy);
        Ok(dir)
    }

    fn exited(&self, name: &InstanceName, scratch: &Path) {
        if name.kind == shoal_procfile::plan::RELEASE {
            return;
        }
        let mut left = Vec::new();
        left_in(scratch, Path::new(""), &mut left);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .scratch_ended(name, left);
    }
}

/// The files under `dir` (relative to it), at most [`MAX_SCRATCH_FILES`] of them.
fn left_in(dir: &Path, relative: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_SCRATCH_FILES {
            return;
        }
        let rel = relative.join(entry.file_name());
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => left_in(&entry.path(), &rel, out),
            Ok(_) => out.push(rel),
            Err(_) => {}
        }
    }
}

/// Mirrors up to [`MIRRORED_LEVELS`] directories above `app_dir` under `frame`: a real
/// directory per level, holding links to everything else at that level. Returns where the
/// copy of `app_dir` goes.
pub(crate) fn mirror(app_dir: &Path, frame: &Path) -> io::Result<PathBuf> {
    // (directory above the app, the name of the next directory down towards it), top first.
    let mut levels: Vec<(&Path, &std::ffi::OsStr)> = Vec::new();
    let mut below = app_dir;
    for above in app_dir.ancestors().skip(1).take(MIRRORED_LEVELS) {
        let Some(name) = below.file_name() else { break };
        if above.parent().is_none() {
            break; // never mirror `/`
        }
        levels.push((above, name));
        below = above;
    }
    levels.reverse();
    let mut current = frame.to_path_buf();
    std::fs::create_dir_all(&current)?;
    for (above, towards) in levels {
        let entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(above) {
            Ok(entries) => entries.flatten().take(MAX_MIRRORED_ENTRIES + 1).collect(),
            Err(_) => Vec::new(),
        };
        if entries.len() <= MAX_MIRRORED_ENTRIES {
            for entry in entries {
                if entry.file_name() != towards {
                    std::os::unix::fs::symlink(entry.path(), current.join(entry.file_name()))?;
                }
            }
        }
        current.push(towards);
        std::fs::create_dir(&current)?;
    }
    // An app right below `/` (or `/` itself) has no level mirrored: its directory is made here,
    // so that the caller always gets one that exists (an overlay needs its mount point).
    if current == frame {
        current.push(app_dir.file_name().unwrap_or(std::ffi::OsStr::new("app")));
        std::fs::create_dir_all(&current)?;
    }
    Ok(current)
}

#[derive(Default)]
pub(crate) struct Budget {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
}

pub(crate) fn copy_tree(
    from: &Path,
    to: &Path,
    relative: &Path,
    skip: &Path,
    manifest: &mut Manifest,
    budget: &mut Budget,
) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let source = entry.path();
        if source == skip {
            continue;
        }
        let name = entry.file_name();
        let target = to.join(&name);
        let rel = relative.join(&name);
        let kind = entry.file_type()?;
        if relative.as_os_str().is_empty() && name == ".git" {
            std::os::unix::fs::symlink(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&source, &target, &rel, skip, manifest, budget)?;
            let permissions = std::fs::metadata(&source)?.permissions();
            std::fs::set_permissions(&target, permissions)?;
        } else if kind.is_file() {
            let len = std::fs::copy(&source, &target)?;
            budget.files += 1;
            budget.bytes += len;
            if budget.files > MAX_FILES || budget.bytes > MAX_BYTES {
                return Err(io::Error::other(format!(
                    "it holds more than {MAX_FILES} files or {} MiB, and it is copied at every instance start — run the app from a smaller directory (`-d`)",
                    MAX_BYTES / 1024 / 1024
                )));
            }
            let modified = std::fs::metadata(&target)?.modified().ok();
            // `list` does not look into bytecode caches: the app's own are not deleted files.
            if !rel
                .components()
                .any(|part| part.as_os_str() == "__pycache__")
            {
                manifest.insert(rel, (len, modified));
            }
        }
        // Sockets, pipes and devices are not copied.
    }
    Ok(())
}

/// The files of `dir` created, changed or deleted since `manifest` was made (relative to
/// it), with `created`, `changed` or `deleted`.
pub(crate) fn changed_since(dir: &Path, manifest: &Manifest) -> Changes {
    let mut now = Manifest::new();
    list(dir, Path::new(""), &mut now);
    compared(manifest, &now)
}

/// The files created, changed (in size or modification time) or deleted from `before` to
/// `now`: those created or changed in the order of their paths, then those deleted.
fn compared(before: &Manifest, now: &Manifest) -> Changes {
    let mut found = Vec::new();
    for (path, meta) in now {
        match before.get(path) {
            None => found.push((path.clone(), "created")),
            Some(was) if was != meta => found.push((path.clone(), "changed")),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|p| !now.contains_key(*p)) {
        found.push((path.clone(), "deleted"));
    }
    found
}

/// The files created, changed or deleted in the overlay mounted on `merged` over `lower`
/// (the app directory) with the upper layer `upper`, as [`changed_since`] finds them in a
/// plain copy — from what the upper layer holds, which is exactly what the instance wrote:
/// the rest of the app is not looked at. A copy-up keeps a file's modification time, so a
/// file opened for writing and left as it was is not changed, as in a plain copy.
///
/// An entry of the upper layer that is not a directory in all three places (a file written,
/// the whiteout of a file or directory deleted, a directory made where there was none) is
/// compared whole: the files below it in `lower` with those in `merged`. A directory of the
/// upper layer that is one in `lower` and `merged` too is looked into, and so is its listing
/// in both: a name that one has and the other lacks without an entry in the upper layer (a
/// directory deleted and made again, which overlayfs marks opaque) is compared whole too.
/// A directory renamed in a copy (overlayfs's `redirect_dir`, on in shoal's mounts as root)
/// shows the app's directory of its old name under its new one: it is found as created where
/// it is and deleted where it was — but for a rename onto a directory that the app had and
/// the copy emptied, where a file of the same name in both is not compared.
pub(crate) fn overlay_changes(upper: &Path, lower: &Path, merged: &Path) -> Changes {
    let mut whole = Vec::new();
    written_below(upper, lower, merged, Path::new(""), &mut whole);
    let (mut before, mut now) = (Manifest::new(), Manifest::new());
    for rel in &whole {
        list_at(&lower.join(rel), rel, &mut before);
        list_at(&merged.join(rel), rel, &mut now);
    }
    compared(&before, &now)
}

/// Adds to `whole` the paths below `rel` to compare whole (see [`overlay_changes`]).
fn written_below(upper: &Path, lower: &Path, merged: &Path, rel: &Path, whole: &mut Vec<PathBuf>) {
    let is_dir = |path: &Path| std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir());
    let Ok(entries) = std::fs::read_dir(upper.join(rel)) else {
        return;
    };
    let mut written = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if not_listed(rel, &name) {
            continue;
        }
        let path = rel.join(&name);
        let dir_everywhere = entry.file_type().is_ok_and(|kind| kind.is_dir())
            && is_dir(&lower.join(&path))
            && is_dir(&merged.join(&path));
        if dir_everywhere {
            written_below(upper, lower, merged, &path, whole);
        } else {
            whole.push(path);
        }
        written.insert(name);
    }
    let names = |dir: PathBuf| -> BTreeSet<OsString> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let (in_lower, in_merged) = (names(lower.join(rel)), names(merged.join(rel)));
    for name in in_lower.symmetric_difference(&in_merged) {
        if !written.contains(name) && !not_listed(rel, name) {
            whole.push(rel.join(name));
        }
    }
}

/// Whether `list` leaves `name`, in the directory `rel`, out.
pub(crate) fn not_listed(rel: &Path, name: &OsStr) -> bool {
    name == IGNORED || (rel.as_os_str().is_empty() && name == ".git")
}

/// The files at `path` (a file, or a directory and everything below it) as `rel`, into `out`.
fn list_at(path: &Path, rel: &Path, out: &mut Manifest) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => list(path, rel, out),
        Ok(meta) if meta.is_file() => {
            out.insert(rel.to_path_buf(), (meta.len(), meta.modified().ok()));
        }
        _ => {}
    }
}

fn list(dir: &Path, relative: &Path, out: &mut Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if not_listed(relative, &name) {
            continue;
        }
        let rel = relative.join(&name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            list(&entry.path(), &rel, out);
        } else if kind.is_file()
            && let Ok(meta) = entry.metadata()
        {
            out.insert(rel, (meta.len(), meta.modified().ok()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_back_as_the_kernel_escapes_them() {
        // mountinfo writes space, tab, newline and `\` as octal escapes; a `\` that starts no
        // escape stays as it is.
        assert_eq!(
            unescape_octal(r"/a\040b\011c\012d\134e\x\9"),
            PathBuf::from("/a b\tc\nd\\e\\x\\9")
        );
    }

    #[test]
    fn an_app_right_below_the_root_gets_a_directory_that_exists() {
        // `/tmp` has nothing above it but `/`, which is never mirrored.
        let frame = tempfile::tempdir().unwrap();
        let dir = mirror(Path::new("/tmp"), frame.path()).unwrap();
        assert_eq!(dir, frame.path().join("tmp"));
        assert!(dir.is_dir());
    }

    #[test]
    fn the_apps_own_bytecode_caches_are_not_changes() {
        let app = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(app.path().join("pkg/__pycache__")).unwrap();
        std::fs::write(app.path().join("pkg/__pycache__/mod.pyc"), "x").unwrap();
        std::fs::write(app.path().join("pkg/mod.py"), "x").unwrap();
        let copy = tempfile::tempdir().unwrap();
        let mut made = Manifest::new();
        let skip = Path::new("/nonexistent");
        copy_tree(
            app.path(),
            copy.path(),
            Path::new(""),
            skip,
            &mut made,
            &mut Budget::default(),
        )
        .unwrap();
        assert_eq!(changed_since(copy.path(), &made), []);
        std::fs::write(copy.path().join("pkg/new.txt"), "x").unwrap();
        assert_eq!(
            changed_since(copy.path(), &made),
            [(PathBuf::from("pkg/new.txt"), "created")]
        );
    }

    #[test]
    fn each_start_gets_a_fresh_plain_copy_and_writes_are_recorded() {
        let refused = Namespace(Err("refused for the test".into()));
        fresh_copies_record_writes(&refused, "plain");
    }

    /// Copy-on-write copies need a mount namespace: the test's thread enters one of its own
    /// (the kernel moves the calling thread alone), so that no mount reaches the host.
    #[test]
    fn each_start_gets_a_fresh_copy_on_write_copy_and_writes_are_recorded() {
        let entered = std::thread::spawn(|| {
            use nix::mount::MsFlags;
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            let flags = MsFlags::MS_REC | MsFlags::MS_SLAVE;
            nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)?;
            fresh_copies_record_writes(&Namespace(Ok(())), "copy-on-write");
            Ok::<(), nix::Error>(())
        })
        .join()
        .unwrap();
        if let Err(err) = entered {
            eprintln!("NOT RUN: cannot enter a mount namespace of its own: {err}");
        }
    }

    /// Every kind of write, in a copy made as `how` says.
    fn fresh_copies_record_writes(namespace: &Namespace, how: &str) {
        let outer = tempfile::tempdir().unwrap();
        let app = outer.path().join("apps/app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(outer.path().join("target/release")).unwrap();
        std::fs::write(outer.path().join("target/release/tool"), "#!/bin/sh\n").unwrap();
        struct Dir(PathBuf);
        impl Dir {
            fn path(&self) -> &Path {
                &self.0
            }
        }
        let app = Dir(app);
        let root = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("app.py"), "print(1)").unwrap();
        std::fs::create_dir(app.path().join("data")).unwrap();
        std::fs::write(app.path().join("data/seed.txt"), "seed").unwrap();
        std::os::unix::fs::symlink("app.py", app.path().join("link.py")).unwrap();
        for file in [
            "olddir/a.txt",
            "olddir/b/c.txt",
            "again/one.txt",
            "again/two.txt",
            "moved/m.txt",
        ] {
            let path = app.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, file).unwrap();
        }
        std::fs::write(app.path().join("opened.txt"), "as it was").unwrap();
        let copies = PrivateCopies::new(app.path(), root.path(), namespace);
        assert_eq!(copies.made().how, how);
        copies.begin_run("round 1");
        let web1 = InstanceName::new("web", 1);
        let dir = copies.prepare(&web1).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("data/seed.txt")).unwrap(),
            "seed"
        );
        assert_eq!(
            std::fs::read_link(dir.join("link.py")).unwrap(),
            Path::new("app.py")
        );
        // What is around the app directory is found from the copy as from the original.
        assert_eq!(
            std::fs::read_to_string(dir.join("../../target/release/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        assert_ne!(dir, app.path());
        std::fs::write(dir.join("data/cache.json"), "{}").unwrap();
        std::fs::write(dir.join("data/seed.txt"), "changed!").unwrap();
        std::fs::create_dir(dir.join("__pycache__")).unwrap();
        std::fs::write(dir.join("__pycache__/app.pyc"), "x").unwrap();
        std::fs::create_dir_all(dir.join("new/deep")).unwrap();
        std::fs::write(dir.join("new/deep/x.txt"), "x").unwrap();
        std::fs::remove_dir_all(dir.join("olddir")).unwrap();
        // Made again after its deletion (overlayfs marks it opaque): what is not made again
        // is deleted.
        std::fs::remove_dir_all(dir.join("again")).unwrap();
        std::fs::create_dir(dir.join("again")).unwrap();
        std::fs::write(dir.join("again/one.txt"), "again/one.txt").unwrap();
        // Renamed (as root, overlayfs's `redirect_dir` lets a copy rename a directory of the
        // app): its files are deleted where they were and created where they are.
        std::fs::rename(dir.join("moved"), dir.join("renamed")).unwrap();
        // Opened for writing (copied up) and left as it was: not a change.
        drop(
            std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("opened.txt"))
                .unwrap(),
        );

        // A restart: the writes are recorded, and the new copy is as the app was.
        let again = copies.prepare(&web1).unwrap();
        assert!(!again.join("data/cache.json").exists());
        assert_eq!(
            std::fs::read_to_string(again.join("data/seed.txt")).unwrap(),
            "seed"
        );
        std::fs::remove_file(again.join("app.py")).unwrap();
        // What an instance kept in its scratch directory: seen between requests (then
        // deleted), and left when a start ended; the release's is not counted.
        let scratch = root.path().join("scratch");
        std::fs::create_dir_all(scratch.join("sessions")).unwrap();
        std::fs::write(scratch.join("sessions/abc"), "alice").unwrap();
        copies.observe_scratch(&web1, &scratch);
        std::fs::remove_file(scratch.join("sessions/abc")).unwrap();
        std::fs::write(scratch.join("upload.part"), "half").unwrap();
        copies.exited(&web1, &scratch);
        copies.exited(&web1, &scratch);
        copies.exited(&InstanceName::new("release", 1), &scratch);
        let Writes {
            app: writes,
            scratch: left,
        } = copies.end_run();
        let left: Vec<(&str, &str)> = left
            .iter()
            .map(|w| (w.instance.as_str(), w.path.as_str()))
            .collect();
        assert_eq!(left, [("web.1", "sessions/abc"), ("web.1", "upload.part")]);
        let summary: Vec<(&str, &str)> =
            writes.iter().map(|w| (w.path.as_str(), w.change)).collect();
        assert_eq!(
            summary,
            [
                ("again/one.txt", "changed"),
                ("data/cache.json", "created"),
                ("data/seed.txt", "changed"),
                ("new/deep/x.txt", "created"),
                ("renamed/m.txt", "created"),
                ("again/two.txt", "deleted"),
                ("moved/m.txt", "deleted"),
                ("olddir/a.txt", "deleted"),
                ("olddir/b/c.txt", "deleted"),
                ("app.py", "deleted")
            ]
        );
        assert_eq!(copies.made().how, how, "no fall-back half-way");
        assert!(
            writes
                .iter()
                .all(|w| w.instance == "web.1" && w.run == "round 1")
        );
        assert!(!again.exists(), "copies are removed at the end of a run");
        // The original was never touched.
        assert_eq!(
            std::fs::read_to_string(app.path().join("data/seed.txt")).unwrap(),
            "seed"
        );
        assert_eq!(
            copies.prepare(&InstanceName::new("release", 1)).unwrap(),
            app.path()
        );
    }
}
