//! Symbolic links that lead out of the app directory. A copy holds the link as it is, so
//! what an instance writes through `uploads -> /srv/uploads` (or `../shared`) lands in the
//! one place every instance shares, not in its copy: said once, when the formation starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use shoal_supervisor::Log;

use super::shown;
use crate::copies::not_listed;

/// Entries looked at, at most: a huge tree is not walked whole at every `shoal start`.
const MAX_ENTRIES: usize = 100_000;
/// Links named one by one; the rest are counted.
const MAX_NAMED: usize = 5;

/// A link in the app directory that leads out of it.
#[derive(Debug, PartialEq, Eq)]
struct Leaving {
    /// Relative to the app directory.
    link: PathBuf,
    target: PathBuf,
}

/// Says on `log` which links of `app_dir` lead out of it.
pub(super) fn report_leaving(app_dir: &Path, log: &Log) {
    let found = leaving(app_dir);
    for Leaving { link, target } in found.iter().take(MAX_NAMED) {
        let (link, shown_target) = (shown(link), shown(target));
        log.system(if target.is_absolute() && target.starts_with(app_dir) {
            format!(
                "--isolate: `{link}` is a symlink to `{shown_target}`, an absolute path, so in every copy it leads to the app directory itself: what instances write through it is shared by all of them and not isolated (a relative link stays in the copy)"
            )
        } else {
            format!(
                "--isolate: `{link}` is a symlink to `{shown_target}`, outside the app directory: what instances write through it is shared by all of them and not isolated"
            )
        });
    }
    if found.len() > MAX_NAMED {
        log.system(format!(
            "--isolate: {} more symlinks lead out of the app directory",
            found.len() - MAX_NAMED
        ));
    }
}

/// The links below `app_dir` that lead out of it, and through which something can be
/// written: to a directory, to a file that is not a program (`venv/bin/python ->
/// /usr/bin/python3` is left alone), or to nothing yet (a write makes it).
fn leaving(app_dir: &Path) -> Vec<Leaving> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    let mut looked_at = 0;
    while let Some(rel) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(app_dir.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            looked_at += 1;
            if looked_at > MAX_ENTRIES {
                return found;
            }
            let name = entry.file_name();
            // `.git` is linked to the original by plain copies, on purpose.
            if not_listed(&rel, &name) {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let link = rel.join(&name);
            if kind.is_dir() {
                pending.push(link);
            } else if kind.is_symlink()
                && let Ok(target) = std::fs::read_link(entry.path())
                && leads_out(&rel, &target)
                && writable_through(&entry.path())
            {
                found.push(Leaving { link, target });
            }
        }
    }
    found.sort_by(|a, b| a.link.cmp(&b.link));
    found
}

/// Whether a link in `dir` (relative to the app directory) to `target` leads out of a copy:
/// an absolute target always does (it names the original, wherever the copy is), a relative
/// one when its `..` climb above the app directory.
fn leads_out(dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth = dir.components().count();
    for part in target.components() {
        match part {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// Whether writing through the link at `path` can change what it leads to.
fn writable_through(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Err(_) => true,
        Ok(meta) if meta.is_dir() => true,
        Ok(meta) => meta.is_file() && meta.permissions().mode() & 0o111 == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_that_climb_out_or_are_absolute_lead_out() {
        assert!(leads_out(Path::new(""), Path::new("/srv/uploads")));
        assert!(leads_out(Path::new(""), Path::new("../shared")));
        assert!(leads_out(Path::new("a/b"), Path::new("../../../x")));
        assert!(leads_out(Path::new("a"), Path::new("b/../../../x")));
        assert!(!leads_out(Path::new("a/b"), Path::new("../../x")));
        assert!(!leads_out(Path::new(""), Path::new("data/./files")));
        assert!(!leads_out(Path::new("a"), Path::new("../b/../c")));
    }

    #[test]
    fn only_links_out_that_can_be_written_through_are_found() {
        let outer = tempfile::tempdir().unwrap();
        let app = outer.path().join("app");
        let shared = outer.path().join("shared");
        std::fs::create_dir_all(app.join("venv/bin")).unwrap();
        std::fs::create_dir_all(app.join(".git")).unwrap();
        std::fs::create_dir(&shared).unwrap();
        let program = outer.path().join("python3");
        std::fs::write(&program, "").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = |target: &Path, at: &str| std::os::unix::fs::symlink(target, app.join(at));
        link(&shared, "uploads").unwrap();
        link(Path::new("../shared"), "up").unwrap();
        link(Path::new("/nowhere/yet"), "venv/cache").unwrap();
        link(&program, "venv/bin/python").unwrap();
        link(Path::new("venv"), "env").unwrap();
        link(&shared, ".git/shared").unwrap();
        let found: Vec<String> = leaving(&app)
            .iter()
            .map(|l| format!("{} -> {}", l.link.display(), l.target.display()))
            .collect();
        assert_eq!(
            found,
            [
                "up -> ../shared".to_owned(),
                format!("uploads -> {}", shared.display()),
                "venv/cache -> /nowhere/yet".to_owned(),
            ]
        );
    }
}
