//! The mount namespace of `shoal start --isolate`, and the mounts made in it.
//!
//! shoal enters a mount namespace of its own (with a user namespace that maps the user to
//! itself, unless it runs as root) only after a child process has done the same steps and
//! mounted a tiny overlay: a kernel or distribution that restricts user namespaces (Ubuntu's
//! AppArmor `kernel.apparmor_restrict_unprivileged_userns`, Debian's
//! `kernel.unprivileged_userns_clone`, `user.max_user_namespaces`, a read-only `/proc`) may
//! let `unshare` succeed and refuse what follows, and a process cannot leave a user namespace
//! it entered: shoal itself would be left without a uid, owning nothing. The child's refusal
//! says why, and the copies are plain ones.

use std::ffi::{CStr, CString};
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::WaitStatus;
use nix::unistd::ForkResult;

/// Whether shoal's mounts are its own, made by [`private_mounts`]: `Err` says why not.
#[derive(Debug, Clone)]
pub struct Namespace(pub(crate) Result<(), String>);

/// Moves shoal into a mount namespace of its own (with a user namespace unless it runs as
/// root), so that the copy-on-write mounts of `--isolate` are seen by shoal and its instances
/// only and vanish with them — after a child process found that the kernel allows every step
/// and an overlay mount. Must be called while shoal has one thread: the kernel enters a
/// thread alone, not its siblings, into a new mount namespace, refuses a user namespace to a
/// process with several threads, and only a process with one thread may run Rust code in a
/// forked child.
pub fn private_mounts() -> Namespace {
    Namespace(enter_private_mounts())
}

fn enter_private_mounts() -> Result<(), String> {
    if threads() != Some(1) {
        return Err("shoal already runs several threads".to_owned());
    }
    let steps = Steps::new().map_err(|err| format!("cannot prepare a trial mount: {err}"))?;
    let refused = |refusal: Refusal| steps.describe(refusal, &read_sysctl);
    steps.try_in_child().map_err(refused)?;
    steps.enter().map_err(refused)
}

fn threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// A step of entering the namespaces, or of the trial after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Fork,
    Unshare,
    SetGroups,
    UidMap,
    GidMap,
    Private,
    Tmpfs,
    Overlay,
}

impl Step {
    const ALL: [Step; 8] = [
        Step::Fork,
        Step::Unshare,
        Step::SetGroups,
        Step::UidMap,
        Step::GidMap,
        Step::Private,
        Step::Tmpfs,
        Step::Overlay,
    ];
}

/// The step the kernel refused, and its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    step: Step,
    errno: Errno,
}

/// `map_err` for a step.
fn refused(step: Step) -> impl Fn(Errno) -> Refusal {
    move |errno| Refusal { step, errno }
}

/// Everything the steps need, made before the fork so that the child only makes system
/// calls.
struct Steps {
    uid: u32,
    root: bool,
    /// `(file, text)` of setgroups, uid_map and gid_map.
    maps: [(CString, CString); 3],
    /// The trial's directory, removed when the steps are dropped (empty outside the child:
    /// its tmpfs is the child's); the overlay's layers in it.
    _trial: tempfile::TempDir,
    trial_path: CString,
    layers: [CString; 4],
    overlay_options: CString,
}

impl Steps {
    fn new() -> io::Result<Steps> {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        let text = |s: &str| cstring(s.as_bytes());
        let trial = tempfile::Builder::new()
            .prefix("shoal-overlay-trial")
            .tempdir()?;
        let layer = |name: &str| cstring(trial.path().join(name).as_os_str().as_bytes());
        let layers = [
            layer("lower")?,
            layer("upper")?,
            layer("work")?,
            layer("on")?,
        ];
        let dir = |i: usize| String::from_utf8_lossy(layers[i].as_bytes()).into_owned();
        let overlay_options = text(&format!(
            "lowerdir={},upperdir={},workdir={}",
            dir(0),
            dir(1),
            dir(2)
        ))?;
        Ok(Steps {
            uid: uid.as_raw(),
            root: uid.is_root(),
            // The user is itself inside, so every file it makes is its own outside too.
            maps: [
                (text("/proc/self/setgroups")?, text("deny")?),
                (
                    text("/proc/self/uid_map")?,
                    text(&format!("{uid} {uid} 1"))?,
                ),
                (
                    text("/proc/self/gid_map")?,
                    text(&format!("{gid} {gid} 1"))?,
                ),
            ],
            trial_path: cstring(trial.path().as_os_str().as_bytes())?,
            _trial: trial,
            layers,
            overlay_options,
        })
    }

    /// Enters the namespaces: shoal's mounts are its own from now on.
    fn enter(&self) -> Result<(), Refusal> {
        let flags = if self.root {
            CloneFlags::CLONE_NEWNS
        } else {
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS
        };
        nix::sched::unshare(flags).map_err(refused(Step::Unshare))?;
        if !self.root {
            let steps = [Step::SetGroups, Step::UidMap, Step::GidMap];
            for ((file, text), step) in self.maps.iter().zip(steps) {
                write_file(file, text).map_err(refused(step))?;
            }
        }
        // A slave of the host's mounts: mounts made outside still arrive, none made here leaves.
        let flags = MsFlags::MS_REC | MsFlags::MS_SLAVE;
        nix::mount::mount(NONE, c"/", NONE, flags, NONE).map_err(refused(Step::Private))
    }

    /// The steps of [`Steps::enter`] and an overlay mount on a tmpfs, in a child process whose
    /// namespaces end with it.
    fn try_in_child(&self) -> Result<(), Refusal> {
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(refused(Step::Fork))?;
        // SAFETY: shoal has one thread (checked by the caller), so the child's copy of the
        // memory holds no lock another thread held; the child makes system calls and ends
        // with `_exit`.
        let child = match unsafe { nix::unistd::fork() }.map_err(refused(Step::Fork))? {
            ForkResult::Parent { child } => child,
            ForkResult::Child => {
                let code = match self.trial_mount() {
                    Ok(()) => 0,
                    Err(Refusal { step, errno }) => {
                        let mut message = [0u8; 8];
                        message[..4].copy_from_slice(&(step as u32).to_ne_bytes());
                        message[4..].copy_from_slice(&(errno as i32).to_ne_bytes());
                        let _ = nix::unistd::write(&write_end, &message);
                        1
                    }
                };
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
        };
        drop(write_end);
        let mut message = Vec::new();
        let _ = std::fs::File::from(read_end)
            .take(8)
            .read_to_end(&mut message);
        let status = loop {
            match nix::sys::wait::waitpid(child, None) {
                Err(Errno::EINTR) => {}
                status => break status.map_err(refused(Step::Fork))?,
            }
        };
        if let Ok(message) = <[u8; 8]>::try_from(message.as_slice()) {
            let [a, b, c, d, e, f, g, h] = message;
            let step = u32::from_ne_bytes([a, b, c, d]);
            let step = Step::ALL.get(step as usize).copied().unwrap_or(Step::Fork);
            let errno = Errno::from_raw(i32::from_ne_bytes([e, f, g, h]));
            return Err(Refusal { step, errno });
        }
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            // Killed before it could say (an out-of-memory kill, say).
            _ => Err(Refusal {
                step: Step::Fork,
                errno: Errno::ECHILD,
            }),
        }
    }

    /// Runs in the forked child: the namespaces, then an overlay of empty layers on a tmpfs
    /// (the tmpfs is the child's: nothing is left on disk).
    fn trial_mount(&self) -> Result<(), Refusal> {
        self.enter()?;
        let (tmpfs, overlay) = (Some(c"tmpfs"), Some(c"overlay"));
        let trial = self.trial_path.as_c_str();
        nix::mount::mount(tmpfs, trial, tmpfs, MsFlags::empty(), NONE)
            .map_err(refused(Step::Tmpfs))?;
        for layer in &self.layers {
            nix::unistd::mkdir(layer.as_c_str(), Mode::S_IRWXU).map_err(refused(Step::Tmpfs))?;
        }
        let options = Some(self.overlay_options.as_c_str());
        nix::mount::mount(
            overlay,
            self.layers[3].as_c_str(),
            overlay,
            MsFlags::empty(),
            options,
        )
        .map_err(refused(Step::Overlay))
    }

    /// Why copy-on-write copies are not possible, in a line.
    fn describe(&self, refusal: Refusal, sysctl: &dyn Fn(&str) -> Option<i64>) -> String {
        let what = match refusal.step {
            Step::Fork => "cannot run a trial process".to_owned(),
            Step::Unshare if self.root => "cannot enter a mount namespace of its own".to_owned(),
            Step::Unshare => format!("cannot enter a user namespace as uid {}", self.uid),
            Step::SetGroups | Step::UidMap | Step::GidMap => {
                let (file, _) = &self.maps[refusal.step as usize - Step::SetGroups as usize];
                format!(
                    "entered a user namespace as uid {} in a trial, but cannot write `{}`",
                    self.uid,
                    file.to_string_lossy()
                )
            }
            Step::Private => "cannot make a mount namespace private".to_owned(),
            Step::Tmpfs => "cannot mount a tmpfs in a mount namespace of its own".to_owned(),
            Step::Overlay => "cannot mount an overlay in a mount namespace of its own".to_owned(),
        };
        let err = io::Error::from(refusal.errno);
        match cause(self.root, refusal, sysctl) {
            Some(cause) => format!("{what}: {err}; {cause}"),
            None => format!("{what}: {err}"),
        }
    }

    #[cfg(test)]
    fn for_test(root: bool) -> Steps {
        let mut steps = Steps::new().unwrap();
        steps.root = root;
        steps.uid = if root { 0 } else { 1000 };
        steps
    }
}

/// What the system's settings say about a refusal, when they tell.
fn cause(root: bool, refusal: Refusal, sysctl: &dyn Fn(&str) -> Option<i64>) -> Option<String> {
    let Refusal { step, errno } = refusal;
    let denied = errno == Errno::EPERM || errno == Errno::EACCES;
    let maps = matches!(step, Step::SetGroups | Step::UidMap | Step::GidMap);
    let mounts = matches!(step, Step::Private | Step::Tmpfs | Step::Overlay);
    if !root && (maps || mounts || (step == Step::Unshare && denied)) && sysctl(APPARMOR) == Some(1)
    {
        return Some(format!(
            "AppArmor restricts unprivileged user namespaces (`{}` is 1)",
            dotted(APPARMOR)
        ));
    }
    match step {
        Step::Unshare if !root && errno == Errno::ENOSPC => Some(match sysctl(MAX_USER) {
            Some(0) => format!("`{}` is 0", dotted(MAX_USER)),
            _ => format!(
                "the limit `{}` is reached (here or in a namespace above this one)",
                dotted(MAX_USER)
            ),
        }),
        Step::Unshare if !root && denied && sysctl(CLONE) == Some(0) => {
            Some(format!("`{}` is 0", dotted(CLONE)))
        }
        Step::Unshare if errno == Errno::EINVAL => {
            Some("the kernel was built without these namespaces".to_owned())
        }
        _ if maps && errno == Errno::EROFS => Some("`/proc` is mounted read-only".to_owned()),
        Step::Overlay if errno == Errno::ENODEV => {
            Some("the kernel has no overlayfs (is the `overlay` module loaded?)".to_owned())
        }
        Step::Overlay if !root && denied => Some(
            "this kernel does not let a user namespace mount overlayfs (Linux 5.11 and later do)"
                .to_owned(),
        ),
        _ => None,
    }
}

const APPARMOR: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const MAX_USER: &str = "/proc/sys/user/max_user_namespaces";

/// `kernel.unprivileged_userns_clone` for `/proc/sys/kernel/unprivileged_userns_clone`.
fn dotted(path: &str) -> String {
    path.trim_start_matches("/proc/sys/").replace('/', ".")
}

fn read_sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes `text` to `file` with system calls only (it runs in a forked child too).
fn write_file(file: &CStr, text: &CStr) -> nix::Result<()> {
    let fd = nix::fcntl::open(file, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let bytes = text.to_bytes();
    match nix::unistd::write(&fd, bytes)? {
        written if written == bytes.len() => Ok(()),
        _ => Err(Errno::EIO),
    }
}

pub(super) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("a path holds a NUL byte"))
}

/// No source, type or data, for `mount`.
const NONE: Option<&CStr> = None;

pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    // Detached: a process of the old instance that escaped its group may still be in it.
    Ok(nix::mount::umount2(target, MntFlags::MNT_DETACH)?)
}

/// Whether overlayfs can be given `path`: its option string separates layers with `:` and
/// options with `,`.
pub(crate) fn overlay_path(path: &Path) -> io::Result<()> {
    match path.to_str() {
        Some(text) if !text.contains([',', ':', '\\']) => Ok(()),
        _ => Err(io::Error::other(format!(
            "overlayfs cannot be given the path `{}` (it holds `,`, `:` or `\\`, or is not UTF-8)",
            super::shown(path)
        ))),
    }
}

/// Mounts an overlay of `lower` on `on`, writing into `upper`.
///
/// As root, with `redirect_dir=on`: otherwise renaming a directory of the app fails with EXDEV
/// in a copy (`mv` copies instead, Python's `os.rename` raises), where it works in a plain
/// copy. In a user namespace (shoal is not root), with `userxattr`: overlayfs keeps its marks
/// (an opaque directory, one deleted and made again) in `trusted.` extended attributes, which a
/// user namespace may not set, so without the option deleting a directory of the app failed
/// with EIO; `userxattr` keeps them in `user.` attributes (it came with overlay mounts in user
/// namespaces, Linux 5.11, and excludes `redirect_dir`: there a renamed directory still gets
/// EXDEV). A kernel that refuses the option (EINVAL) mounts without it.
pub(crate) fn mount_overlay(lower: &Path, upper: &Path, work: &Path, on: &Path) -> io::Result<()> {
    for path in [lower, upper, work] {
        overlay_path(path)?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mount = |options: &str| {
        let overlay = Some("overlay");
        nix::mount::mount(overlay, on, overlay, MsFlags::empty(), Some(options))
    };
    let extra = if nix::unistd::geteuid().is_root() {
        "redirect_dir=on"
    } else {
        "userxattr"
    };
    match mount(&format!("{options},{extra}")) {
        Err(Errno::EINVAL) => Ok(mount(&options)?),
        done => Ok(done?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlayfs_is_not_given_paths_its_options_would_split() {
        assert!(overlay_path(Path::new("/srv/app")).is_ok());
        for path in ["/srv/a,b", "/srv/a:b", "/srv/a\\b"] {
            let err = overlay_path(Path::new(path)).unwrap_err().to_string();
            assert!(err.contains(&path.replace('\\', "\\\\")), "{err}");
        }
    }

    fn settings<'a>(set: &'a [(&'a str, i64)]) -> impl Fn(&str) -> Option<i64> + 'a {
        move |path| set.iter().find(|(p, _)| *p == path).map(|(_, v)| *v)
    }

    #[test]
    fn a_refusal_names_the_setting_behind_it() {
        let user = Steps::for_test(false);
        let refused = |step, errno| Refusal { step, errno };
        // Ubuntu: unshare succeeds, the maps are refused.
        let line = user.describe(
            refused(Step::UidMap, Errno::EPERM),
            &settings(&[(APPARMOR, 1)]),
        );
        assert!(
            line.starts_with("entered a user namespace as uid 1000 in a trial, but cannot write `/proc/self/uid_map`: ")
                && line.ends_with(
                    "; AppArmor restricts unprivileged user namespaces (`kernel.apparmor_restrict_unprivileged_userns` is 1)"
                ),
            "{line}"
        );
        let line = user.describe(
            refused(Step::Unshare, Errno::ENOSPC),
            &settings(&[(MAX_USER, 0)]),
        );
        assert!(
            line.ends_with("; `user.max_user_namespaces` is 0"),
            "{line}"
        );
        let line = user.describe(refused(Step::Unshare, Errno::ENOSPC), &settings(&[]));
        assert!(
            line.ends_with("the limit `user.max_user_namespaces` is reached (here or in a namespace above this one)"),
            "{line}"
        );
        let line = user.describe(
            refused(Step::Unshare, Errno::EPERM),
            &settings(&[(CLONE, 0), (APPARMOR, 0)]),
        );
        assert!(
            line.ends_with("; `kernel.unprivileged_userns_clone` is 0"),
            "{line}"
        );
        let line = user.describe(refused(Step::SetGroups, Errno::EROFS), &settings(&[]));
        assert!(line.contains("`/proc/self/setgroups`"), "{line}");
        assert!(line.ends_with("; `/proc` is mounted read-only"), "{line}");
        // Nothing known: the error alone.
        let line = user.describe(refused(Step::Private, Errno::EINVAL), &settings(&[]));
        assert_eq!(
            line,
            format!(
                "cannot make a mount namespace private: {}",
                io::Error::from(Errno::EINVAL)
            )
        );
        // AppArmor does not restrict root.
        let root = Steps::for_test(true);
        let line = root.describe(
            refused(Step::Overlay, Errno::EPERM),
            &settings(&[(APPARMOR, 1)]),
        );
        assert!(!line.contains("AppArmor"), "{line}");
    }
}
