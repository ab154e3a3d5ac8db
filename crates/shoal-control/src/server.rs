//! The formation's side of the control socket.
//!
//! Changes to the formation are made one at a time (a second `scale` waits for a `restart` in
//! progress); `ps` answers at once. Every change is built from three supervisor primitives —
//! add an instance, drain one (out of the router's rotation), retire one (SIGTERM, then SIGKILL
//! after the grace period) — so that:
//! - a scale-down drains each removed `web` instance before stopping it;
//! - a rolling restart of a routed type keeps every name and port: one stand-in instance
//!   (at the lowest free index) starts first and must become ready; then each instance in
//!   turn is drained until the router has no request in flight on it, stopped, and started
//!   again under its own name and port; last, the stand-in is drained and stopped. The type
//!   never has fewer ready instances than before, so under a steady load this fails no
//!   request, POSTs included. Two processes never share a name (nor its scratch directory,
//!   nor its request counts), and the type never exceeds its count by more than one.
//! - instances of other types (nothing routes to them) are stopped and started again one at
//!   a time, so a type meant to run once (a clock) never runs twice.
//!
//! While the formation is starting or stopping, every change is refused with that reason.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_procfile::{InstanceName, Plan};
use shoal_router::RouterStats;
use shoal_supervisor::process::Usage;
use shoal_supervisor::scratch::{RuntimeDirError, effective_uid, private_dir};
use shoal_supervisor::{Handle, IfItFails, Phase, Snapshot, State};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::protocol::{InstanceStatus, Request, RequestError, Response};

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// The listening control socket of one formation.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    local_writes: Option<LocalWrites>,
}

/// How many files an instance (by name) wrote in its copy of the app directory
/// (`shoal start --isolate`).
pub type LocalWrites = Arc<dyn Fn(&str) -> u64 + Send + Sync>;

/// Why the control socket cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The socket's directory is not one only this user can use.
    #[error(transparent)]
    Directory(#[from] RuntimeDirError),
    /// Removing a stale socket or binding failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ControlServer {
    /// Binds `path` with mode 0600, inside a directory that is (or is made) private to this
    /// user: the socket is bound before its mode is set, and inside such a directory nobody
    /// else can reach it meanwhile, or put anything at its name first. The caller holds the
    /// formation lock, so a socket file already there was left by a shoal that was killed: it
    /// is replaced.
    pub fn bind(path: &Path) -> Result<ControlServer, BindError> {
        use std::os::unix::fs::PermissionsExt;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        private_dir(directory)?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            local_writes: None,
        })
    }

    /// `ps` gives each instance's count of writes into its copy of the app directory.
    pub fn with_local_writes(mut self, count: LocalWrites) -> Self {
        self.local_writes = Some(count);
        self
    }

    /// Answers requests until the task is dropped; removes the socket file then.
    pub async fn serve(
        self,
        handle: Handle,
        plan: Arc<Plan>,
        stats: Option<Arc<RouterStats>>,
        grace: Duration,
    ) {
        let shared = Arc::new(Shared {
            handle,
            plan,
            stats,
            grace,
            changes: Mutex::new(()),
            cpu_seen: std::sync::Mutex::default(),
            local_writes: self.local_writes.clone(),
        });
        let _cleanup = RemoveOnDrop(self.path.clone());
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = connection(stream, &shared).await;
            });
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Shared {
    handle: Handle,
    plan: Arc<Plan>,
    stats: Option<Arc<RouterStats>>,
    grace: Duration,
    /// Held while the formation is being changed.
    changes: Mutex<()>,
    /// Each instance's CPU time at the previous `ps`, by pid, for the CPU percentage since.
    cpu_seen: std::sync::Mutex<CpuSeen>,
    local_writes: Option<LocalWrites>,
}

/// Whether `stream`'s peer may use the socket: only processes of this user may. The socket's
/// mode and directory already keep others out; this holds even if they were loosened.
async fn admit(stream: &mut UnixStream, own_uid: u32) -> io::Result<bool> {
    let peer = stream.peer_cred()?.uid();
    if peer == own_uid {
        return Ok(true);
    }
    let response = Response::refused(&RequestError::Failed(format!(
        "refused: this formation answers only its own user (uid {own_uid}), not uid {peer}"
    )));
    let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    Ok(false)
}

async fn connection(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    if !admit(&mut stream, effective_uid()).await? {
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let read = (&mut lines)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await?;
        if read == 0 {
            return Ok(());
        }
        let response = match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) => handle(request, shared).await,
            Err(err) => Response::refused(&RequestError::Usage(format!(
                "cannot read the request: {err}"
            ))),
        };
        let mut text = serde_json::to_string(&response).map_err(io::Error::other)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
}

async fn handle(request: Request, shared: &Shared) -> Response {
    let result = match request {
        Request::Ps => {
            let instances = status(&shared.handle.snapshot(), shared.stats.as_deref());
            // One pass over `/proc`, on a blocking thread: not on one that serves the router.
            let usage = tokio::task::spawn_blocking(shoal_supervisor::process::usage_by_group)
                .await
                .unwrap_or_default();
            let mut instances = with_usage(
                instances,
                &usage,
                &mut shared.cpu_seen.lock().unwrap_or_else(|e| e.into_inner()),
            );
            if let Some(count) = &shared.local_writes {
                for instance in &mut instances {
                    instance.local_writes = Some(count(&instance.name));
                }
            }
            return Response {
                instances: Some(instances),
                ..Response::message("")
            };
        }
        Request::Scale { counts } => {
            let _changing = shared.changes.lock().await;
            match running(shared) {
                Ok(()) => scale(shared, &counts).await,
                Err(failure) => Err(failure),
            }
        }
        Request::Restart { target } => {
            let _changing = shared.changes.lock().await;
            match running(shared) {
                Ok(()) => restart(shared, target.as_deref()).await,
                Err(failure) => Err(failure),
            }
        }
        // Asking again is not a failure: the formation does what was asked.
        Request::Stop { target: None } if shared.handle.phase() == Phase::Stopping => {
            Ok("the formation is already stopping".to_owned())
        }
        Request::Stop { target: None } => {
            shared.handle.stop();
            Ok("stopping the formation".to_owned())
        }
        Request::Stop {
            target: Some(target),
        } => {
            let _changing = shared.changes.lock().await;
            match running(shared) {
                Ok(()) => stop(shared, &target).await,
                Err(failure) => Err(failure),
            }
        }
    };
    match result {
        Ok(message) => Response::message(message),
        Err(error) => Response::refused(&error),
    }
}

/// Each instance's CPU time when `ps` last looked, by pid.
type CpuSeen = HashMap<u32, (std::time::Instant, f64)>;

/// Adds CPU and memory, summed over each instance's process group (`usage`, read from `/proc`
/// in one pass). The CPU percentage is over the time since the previous `ps`, or since the
/// instance started.
fn with_usage(
    mut instances: Vec<InstanceStatus>,
    usage: &HashMap<u32, Usage>,
    seen: &mut CpuSeen,
) -> Vec<InstanceStatus> {
    let now = std::time::Instant::now();
    let mut next = CpuSeen::new();
    for instance in &mut instances {
        let Some(pid) = instance.pid else { continue };
        let Some(group) = usage.get(&pid) else {
            continue;
        };
        let (since, cpu_before) = match seen.get(&pid) {
            Some(&(at, cpu)) => (now.duration_since(at).as_secs_f64(), cpu),
            None => (instance.uptime_secs.unwrap_or(0.0), 0.0),
        };
        instance.cpu_seconds = Some(group.cpu_seconds);
        instance.memory_bytes = Some(group.resident_bytes);
        instance.cpu_percent =
            (since > 0.0).then(|| ((group.cpu_seconds - cpu_before).max(0.0) / since) * 100.0);
        next.insert(pid, (now, group.cpu_seconds));
    }
    *seen = next;
    instances
}

/// Every instance, as `shoal ps` shows it.
pub fn status(snapshot: &Snapshot, stats: Option<&RouterStats>) -> Vec<InstanceStatus> {
    let limit = stats.and_then(RouterStats::limit);
    let routed = shoal_procfile::plan::WEB;
    snapshot
        .instances
        .iter()
        .map(|i| {
            let name = i.name.to_string();
            InstanceStatus {
                kind: i.name.kind.clone(),
                pid: i.pid,
                port: i.port,
                state: i.state.as_str().to_owned(),
                uptime_secs: i.started_at.map(|at| at.elapsed().as_secs_f64()),
                restarts: i.restarts,
                in_flight: stats.map_or(0, |s| s.in_flight(&name)),
                served: stats.map_or(0, |s| s.served(&name)),
                max_in_flight: limit.filter(|_| i.name.kind == routed),
                queued: limit
                    .filter(|_| i.name.kind == routed)
                    .map(|_| stats.map_or(0, RouterStats::queued)),
                cpu_percent: None,
                cpu_seconds: None,
                memory_bytes: None,
                memory_limit_bytes: i.memory_limit,
                local_writes: None,
                last_exit: i.last_cause.as_ref().map(ToString::to_string),
                name,
            }
        })
        .collect()
}

/// Changes are made only while the formation runs: starting, its instances are not there yet;
/// stopping, nothing may start and everything is being stopped anyway.
fn running(shared: &Shared) -> Result<(), RequestError> {
    match shared.handle.phase() {
        Phase::Running => Ok(()),
        Phase::Starting => Err(RequestError::Failed(
            "the formation is starting (its `release` command runs); try again once it runs"
                .to_owned(),
        )),
        Phase::Stopping => Err(RequestError::Failed("the formation is stopping".to_owned())),
    }
}

/// Whether an instance in this state is on its way out of the formation.
fn leaving(state: State) -> bool {
    matches!(state, State::Stopping | State::Stopped | State::Draining)
}

/// The instances of the formation that are not on their way out.
fn members(snapshot: &Snapshot, kind: Option<&str>) -> Vec<InstanceName> {
    snapshot
        .instances
        .iter()
        .filter(|i| kind.is_none_or(|k| i.name.kind == k))
        .filter(|i| !leaving(i.state))
        .map(|i| i.name.clone())
        .collect()
}

fn check_type<'a>(plan: &'a Plan, kind: &str) -> Result<&'a str, RequestError> {
    match plan.process_type(kind) {
        Some(t) => Ok(&t.name),
        None => Err(RequestError::Usage(format!(
            "unknown process type `{kind}`; the Procfile defines {}",
            plan.types
                .iter()
                .map(|t| format!("`{}`", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn scale(shared: &Shared, counts: &BTreeMap<String, u32>) -> Result<String, RequestError> {
    for kind in counts.keys() {
        check_type(&shared.plan, kind)?;
    }
    let mut done = Vec::new();
    for (kind, &wanted) in counts {
        let mut current = members(&shared.handle.snapshot(), Some(kind));
        current.sort();
        let have = current.len() as u32;
        for _ in have..wanted {
            shared.handle.add(kind).await?;
        }
        // Remove the highest-numbered instances, draining each first.
        for name in current
            .iter()
            .rev()
            .take(have.saturating_sub(wanted) as usize)
        {
            drain(shared, name).await?;
            shared.handle.retire(name).await?;
        }
        done.push(format!("{kind}={wanted}"));
    }
    Ok(format!("scaled to {}", done.join(",")))
}

/// The instances `target` names (a type, an instance, or every instance for `None`) that are
/// not on their way out; an instance that is is an error of its own.
fn targets(shared: &Shared, target: Option<&str>) -> Result<Vec<InstanceName>, RequestError> {
    let snapshot = shared.handle.snapshot();
    let Some(target) = target else {
        return Ok(members(&snapshot, None));
    };
    if let Ok(name) = target.parse::<InstanceName>()
        && let Some(instance) = snapshot.instances.iter().find(|i| i.name == name)
    {
        if leaving(instance.state) {
            return Err(RequestError::Failed(format!(
                "`{name}` is {}: it is leaving the formation",
                instance.state.as_str()
            )));
        }
        return Ok(vec![name]);
    }
    let kind = check_type(&shared.plan, target).map_err(|_| {
        RequestError::Usage(format!(
            "`{target}` is neither a process type nor a running instance"
        ))
    })?;
    Ok(members(&snapshot, Some(kind)))
}

/// What a command that found nothing to act on says: never an empty list of names.
fn nothing(target: Option<&str>, verb: &str) -> String {
    match target {
        None => format!("nothing to {verb}: the formation has no running instances"),
        Some(target) => format!("nothing to {verb}: `{target}` has no running instances"),
    }
}

fn joined(names: &[InstanceName]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn restart(shared: &Shared, target: Option<&str>) -> Result<String, RequestError> {
    let names = targets(shared, target)?;
    if names.is_empty() {
        return Ok(nothing(target, "restart"));
    }
    // One type at a time, in the order of the formation.
    let mut kinds: Vec<&str> = Vec::new();
    for name in &names {
        if !kinds.contains(&name.kind.as_str()) {
            kinds.push(&name.kind);
        }
    }
    let mut stood_in = Vec::new();
    for kind in kinds {
        let of_kind: Vec<InstanceName> = names.iter().filter(|n| n.kind == kind).cloned().collect();
        match restart_kind(shared, kind, &of_kind).await {
            Ok(Some(stand_in)) => stood_in.push(stand_in),
            Ok(None) => {}
            // A stop that began meanwhile is the reason, whatever step it cut short.
            Err(failure) => return Err(running(shared).err().unwrap_or(failure)),
        }
    }
    let mut message = format!("restarted {}", joined(&names));
    if !stood_in.is_empty() {
        let _ = write!(message, " ({} stood in meanwhile)", joined(&stood_in));
    }
    Ok(message)
}

/// Restarts `names` of `kind` one at a time, each under its own name and port. While the
/// router sends the type traffic, a stand-in serves beside them throughout (returned), so
/// that the type is never an instance short; at the most instances a type can have, there is
/// no room for one, and the others carry the traffic while each restarts.
async fn restart_kind(
    shared: &Shared,
    kind: &str,
    names: &[InstanceName],
) -> Result<Option<InstanceName>, RequestError> {
    let snapshot = shared.handle.snapshot();
    let of_kind = || snapshot.instances.iter().filter(|i| i.name.kind == kind);
    let routed = shared.stats.is_some() && of_kind().any(|i| i.state == State::Ready);
    let room = of_kind().count() < shoal_procfile::formation::MAX_PER_TYPE as usize;
    let stand_in = if routed && room {
        match shared.handle.boot(kind, None, IfItFails::GiveUp).await {
            Ok(stand_in) => Some(stand_in),
            Err(error) => {
                return Err(RequestError::from(error).and(format!(
                    "{} {} running as before",
                    joined(names),
                    if names.len() == 1 { "keeps" } else { "keep" }
                )));
            }
        }
    } else {
        None
    };
    for name in names {
        running(shared)?;
        drain(shared, name).await?;
        shared.handle.retire(name).await?;
        wait_until_gone(shared, name).await;
        // With a stand-in serving, one that fails is given up and the stand-in stays in its
        // place; without one, it restarts as any instance that exits.
        let if_it_fails = match stand_in {
            Some(_) => IfItFails::GiveUp,
            None => IfItFails::Restart,
        };
        if let Err(error) = shared
            .handle
            .boot(kind, Some(name.index), if_it_fails)
            .await
        {
            let error = RequestError::from(error);
            return Err(match &stand_in {
                Some(stand_in) => error.and(format!("{stand_in} keeps serving in its place")),
                None => error,
            });
        }
    }
    if let Some(stand_in) = &stand_in {
        drain(shared, stand_in).await?;
        shared.handle.retire(stand_in).await?;
        wait_until_gone(shared, stand_in).await;
    }
    Ok(stand_in)
}

async fn stop(shared: &Shared, target: &str) -> Result<String, RequestError> {
    let names = targets(shared, Some(target))?;
    if names.is_empty() {
        return Ok(nothing(Some(target), "stop"));
    }
    for name in &names {
        drain(shared, name).await?;
        shared.handle.retire(name).await?;
    }
    Ok(format!("stopping {}", joined(&names)))
}

/// Takes a routed instance out of rotation and waits (at most the grace period) until the
/// router has no request in flight on it.
async fn drain(shared: &Shared, name: &InstanceName) -> Result<(), RequestError> {
    let Some(stats) = &shared.stats else {
        return Ok(());
    };
    let snapshot = shared.handle.snapshot();
    let routed = snapshot
        .instances
        .iter()
        .any(|i| &i.name == name && i.state == State::Ready);
    if !routed {
        return Ok(());
    }
    shared.handle.drain(name).await?;
    // The last request ending wakes the wait.
    let label = name.to_string();
    let settled = crate::RouterIdle::settled(stats, &label);
    let _ = tokio::time::timeout(shared.grace, settled).await;
    Ok(())
}

/// Waits (at most the grace period and a little more) until a retired instance has exited.
async fn wait_until_gone(shared: &Shared, name: &InstanceName) {
    let mut snapshots = shared.handle.watch();
    let _ = tokio::time::timeout(shared.grace + Duration::from_secs(5), async {
        while snapshots
            .borrow_and_update()
            .instances
            .iter()
            .any(|i| &i.name == name)
        {
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    /// Names the socket the child of `refuses_a_peer_of_another_user` connects to.
    const PEER_SOCKET: &str = "SHOAL_TEST_PEER_SOCKET";
    /// The user the child runs as (`nobody`).
    const OTHER_UID: u32 = 65534;

    /// Not a test of its own: `refuses_a_peer_of_another_user` runs this test binary again as
    /// another user, and this connects to the socket it names and prints what it is told.
    #[test]
    fn peer_of_another_user() {
        let Some(path) = std::env::var_os(PEER_SOCKET) else {
            return;
        };
        let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        println!("answer: {answer}");
    }

    #[tokio::test]
    async fn refuses_a_peer_of_another_user() {
        if effective_uid() != 0 {
            eprintln!("skipped: only root can connect as another user");
            return;
        }
        // The child must be able to reach the socket: the only thing keeping it out is the
        // check of its uid.
        let dir = std::env::temp_dir().join(format!("shoal-control-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();

        let child = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "server::tests::peer_of_another_user"])
                    .arg("--nocapture")
                    .env(PEER_SOCKET, &path)
                    .current_dir("/")
                    .uid(OTHER_UID)
                    .gid(OTHER_UID)
                    .output()
                    .unwrap()
            })
        };
        let accepted = tokio::time::timeout(Duration::from_secs(60), listener.accept()).await;
        let Ok(accepted) = accepted else {
            let out = child.await.unwrap();
            panic!(
                "the other user's process never connected: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (mut stream, _) = accepted.unwrap();
        assert!(!admit(&mut stream, effective_uid()).await.unwrap());
        drop(stream);
        let out = child.await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!(
                r#""error":"refused: this formation answers only its own user (uid 0), not uid {OTHER_UID}""#
            )),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);

        // A process of the same user is let in.
        let (mut own, _other_end) = UnixStream::pair().unwrap();
        assert!(admit(&mut own, effective_uid()).await.unwrap());
    }
}
