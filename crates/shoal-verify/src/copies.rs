//! Private copies of the app directory, one per instance start: what one instance writes to
//! its working directory no other instance sees, and a restart starts from a fresh copy — as
//! on separate machines, where a restart (a deploy, a move to another host) brings back the
//! app as it was built. Absolute paths are untouched: a SQLite file or an upload directory
//! named by an absolute path in the environment stays shared, as a backing service is.
//!
//! A copy sits where the app directory's surroundings are mirrored, up to three levels up,
//! with links to the originals: a command such as `../../target/release/app` finds from a
//! copy what it finds from the app directory. What is outside the app directory is shared, as
//! an absolute path is.
//!
//! Each copy's files are listed when it is made; when the copy is replaced or the run ends,
//! the files the instance created, changed or deleted are recorded, so that the report can
//! say *which* local files carried state. Python's bytecode caches (`__pycache__`) are not
//! counted. `.git` is not copied: each copy links to the original.
//!
//! The scratch directory (`SHOAL_SCRATCH`, `TMPDIR`) is observed too: it is empty at every
//! start, verify looks into it after every request ([`PrivateCopies::observe_scratch`]), and
//! the supervisor tells the provider when a start ends, before emptying it. Every file seen
//! there during a start is recorded once (at most [`MAX_SCRATCH_FILES`] per start) — also one
//! that a later request deleted, as a sign-out deletes a session file. A Django site with file
//! sessions keeps them there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use shoal_procfile::InstanceName;
use shoal_supervisor::WorkDirs;
use shoal_supervisor::scratch::remove_all;

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
    /// Relative to the app directory.
    pub path: String,
    /// `created`, `changed` or `deleted`.
    pub change: &'static str,
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
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    run: String,
    /// Each instance's current copy, and what it held when it was made.
    manifests: HashMap<InstanceName, (PathBuf, Manifest)>,
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
            let write = LocalWrite {
                run: self.run.clone(),
                instance: name.to_string(),
                path: path.display().to_string(),
                change: "created",
            };
            // Seen again by a look between the end and the emptying.
            if !self.scratch_writes.contains(&write) {
                self.scratch_writes.push(write);
            }
        }
    }
}

impl PrivateCopies {
    /// Copies of `app_dir` under `root` (which must exist).
    pub(crate) fn new(app_dir: &Path, root: &Path) -> PrivateCopies {
        PrivateCopies {
            app_dir: app_dir.to_path_buf(),
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
        }
    }

    /// Names the run whose writes are recorded from now on.
    pub(crate) fn begin_run(&self, run: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).run = run.to_owned();
    }

    /// Records the writes of every copy still in place (the formation has stopped) and returns
    /// those of the current run, in the copies and in the scratch directories.
    pub(crate) fn end_run(&self) -> Writes {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let manifests: Vec<(InstanceName, (PathBuf, Manifest))> = state.manifests.drain().collect();
        for (name, (copy, manifest)) in manifests {
            let run = state.run.clone();
            state.writes.extend(changes(&copy, &manifest, &run, &name));
            let _ = remove_all(&self.root.join(name.to_string()));
        }
        // Instances whose end was not reported (a formation that had to be killed).
        let unended: Vec<InstanceName> = state.scratch_seen.keys().cloned().collect();
        for name in unended {
            state.scratch_ended(&name, Vec::new());
        }
        let run = state.run.clone();
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

    /// Makes a fresh copy for `name`, in a fresh mirror of the app's surroundings.
    fn fresh_copy(&self, name: &InstanceName) -> io::Result<(PathBuf, Manifest)> {
        let frame = self.root.join(name.to_string());
        remove_all(&frame)?;
        let dir = mirror(&self.app_dir, &frame)?;
        let mut manifest = Manifest::new();
        let mut budget = Budget::default();
        copy_tree(
            &self.app_dir,
            &dir,
            Path::new(""),
            &self.root,
            &mut manifest,
            &mut budget,
        )
        .map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "cannot copy the app directory `{}` to `{}`: {err}",
                    self.app_dir.display(),
                    dir.display()
                ),
            )
        })?;
        Ok((dir, manifest))
    }
}

impl WorkDirs for PrivateCopies {
    fn prepare(&self, name: &InstanceName) -> io::Result<PathBuf> {
        // `release` prepares the app for every instance (migrations, built assets): it runs in
        // the app directory itself, before any copy is made.
        if name.kind == shoal_procfile::plan::RELEASE {
            return Ok(self.app_dir.clone());
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((copy, manifest)) = state.manifests.remove(name) {
                let run = state.run.clone();
                let found = changes(&copy, &manifest, &run, name);
                state.writes.extend(found);
            }
        }
        let (dir, manifest) = self.fresh_copy(name)?;
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .manifests
            .insert(name.clone(), (dir.clone(), manifest));
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

/// What changed in `dir` since `manifest` was made.
fn changes(dir: &Path, manifest: &Manifest, run: &str, name: &InstanceName) -> Vec<LocalWrite> {
    changed_since(dir, manifest)
        .into_iter()
        .map(|(path, change)| LocalWrite {
            run: run.to_owned(),
            instance: name.to_string(),
            path: path.display().to_string(),
            change,
        })
        .collect()
}

/// The files of `dir` created, changed or deleted since `manifest` was made (relative to
/// it), with `created`, `changed` or `deleted`.
pub(crate) fn changed_since(dir: &Path, manifest: &Manifest) -> Changes {
    let mut now = Manifest::new();
    list(dir, Path::new(""), &mut now);
    let mut found = Vec::new();
    for (path, meta) in &now {
        match manifest.get(path) {
            None => found.push((path.clone(), "created")),
            Some(before) if before != meta => found.push((path.clone(), "changed")),
            Some(_) => {}
        }
    }
    for path in manifest.keys().filter(|p| !now.contains_key(*p)) {
        found.push((path.clone(), "deleted"));
    }
    found
}

fn list(dir: &Path, relative: &Path, out: &mut Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "__pycache__" || (relative.as_os_str().is_empty() && name == ".git") {
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
    fn each_start_gets_a_fresh_copy_and_writes_are_recorded() {
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
        let copies = PrivateCopies::new(app.path(), root.path());
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
                ("data/cache.json", "created"),
                ("data/seed.txt", "changed"),
                ("app.py", "deleted")
            ]
        );
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
