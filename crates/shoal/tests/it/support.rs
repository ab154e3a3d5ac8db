//! The test harness: an app directory with a Procfile, and a running `shoal` whose output can
//! be waited on line by line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous, because CI machines are small and busy; tests wait for conditions, not time.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn shoal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shoal"))
}

/// The fake child binary, built next to `shoal` by `cargo test --workspace` (for its own
/// integration tests).
pub(crate) fn fake_bin() -> PathBuf {
    let path = shoal_bin().with_file_name("shoal-fake");
    assert!(
        path.exists(),
        "`{}` is missing: run the tests with `cargo test --workspace` so that shoal-fake is built",
        path.display()
    );
    path
}

/// A formation port P for `shoal start -p P`: P and the instance ports laid out after it (the
/// first ten of each of three blocks, P+100+n, P+200+n, P+300+n) are free now, and all of them
/// lie below the kernel's ephemeral range (32768 and up), so no outgoing connection (to the
/// database, between tests) can be given one of them before the formation binds it.
/// Whether the tests run as root with every one of `tools` (absolute paths) installed: what a
/// test needs to run shoal as another user (`setpriv`) or in namespaces of its own
/// (`unshare`). A test that cannot says NOT RUN.
pub(crate) fn root_with(tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && tools.iter().all(|tool| Path::new(tool).exists())
}

pub(crate) fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut x = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1;
    let free = |port: u16| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok();
    loop {
        // xorshift64: a fresh candidate on every attempt.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 10_000 + (x % 22_000) as u16;
        if free(port) && (1..=3).all(|block| (0..10).all(|n| free(port + 100 * block + n))) {
            return port;
        }
    }
}

/// A temporary app directory, and a private temporary directory for shoal's runtime files
/// (so tests never share or leave behind runtime directories).
pub(crate) struct App {
    pub(crate) dir: tempfile::TempDir,
    tmp: tempfile::TempDir,
}

impl App {
    /// An app whose Procfile is `procfile`, with `FAKE` replaced by the fake child's path.
    pub(crate) fn new(procfile: &str) -> App {
        let app = App {
            dir: tempfile::tempdir().expect("temp dir"),
            tmp: tempfile::tempdir().expect("temp dir"),
        };
        app.write("Procfile", procfile);
        app
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` (with `FAKE` replaced by the fake child's path).
    pub(crate) fn write(&self, name: &str, text: &str) -> &App {
        let text = text.replace("FAKE", &fake_bin().display().to_string());
        std::fs::write(self.dir.path().join(name), text).expect("write file");
        self
    }

    /// `shoal ARGS` in the app directory, with a clean, colourless environment.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(shoal_bin());
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("PORT")
            .env("TMPDIR", self.tmp.path())
            .env("NO_COLOR", "1");
        command
    }

    /// Runs `shoal ARGS` to completion.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("run shoal");
        Output {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts `shoal ARGS` in the background.
    pub(crate) fn spawn(&self, args: &[&str]) -> Running {
        Running::spawn(self.command(args))
    }
}

/// A finished `shoal`.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

#[derive(Default)]
struct Lines {
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// A `shoal` running in the background, its output collected as it comes.
pub(crate) struct Running {
    child: Child,
    lines: Arc<(Mutex<Lines>, Condvar)>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub(crate) fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shoal");
        let lines = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let readers = vec![
            collect(stdout, lines.clone(), |l| &mut l.stdout),
            collect(stderr, lines.clone(), |l| &mut l.stderr),
        ];
        Running {
            child,
            lines,
            readers,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `count` stdout lines match `matches`, and returns them.
    pub(crate) fn wait_for_n(
        &self,
        count: usize,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        self.wait_for_n_within(DEADLINE, count, what, matches)
    }

    /// [`Running::wait_for_n`] with a deadline of `patience`.
    pub(crate) fn wait_for_n_within(
        &self,
        patience: Duration,
        count: usize,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let (lock, changed) = &*self.lines;
        let deadline = Instant::now() + patience;
        let mut found = Vec::new();
        // Lines already looked at: each line is checked once, however often we wake up.
        let mut checked = 0;
        let mut lines = lock.lock().unwrap();
        loop {
            found.extend(
                lines.stdout[checked..]
                    .iter()
                    .filter(|l| matches(l))
                    .cloned(),
            );
            checked = lines.stdout.len();
            if found.len() >= count {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "waited {patience:?} for {count} line(s) {what}, saw {}; output so far:\n{}\nstderr:\n{}",
                    found.len(),
                    lines.stdout.join("\n"),
                    lines.stderr.join("\n")
                );
            }
            lines = changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits for a stdout line containing `text`, and returns it.
    pub(crate) fn wait_for(&self, text: &str) -> String {
        self.wait_for_n(1, &format!("containing `{text}`"), |l| l.contains(text))
            .remove(0)
    }

    /// Sends `signal` to shoal.
    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for shoal to exit and returns its status and complete output.
    pub(crate) fn finish(mut self) -> Output {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for shoal") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "shoal did not exit within {DEADLINE:?}; output:\n{}",
                    self.stdout()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let lines = self.lines.0.lock().unwrap();
        Output {
            status,
            stdout: lines.stdout.join("\n"),
            stderr: lines.stderr.join("\n"),
        }
    }

    /// Everything shoal printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.lines.0.lock().unwrap().stdout.join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave a formation behind: stop shoal as a user would, and
        // kill it only if it does not stop.
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(
    pipe: impl std::io::Read + Send + 'static,
    lines: Arc<(Mutex<Lines>, Condvar)>,
    pick: fn(&mut Lines) -> &mut Vec<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer)
                        .trim_end_matches('\n')
                        .to_owned();
                    let (lock, changed) = &*lines;
                    let mut guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    pick(&mut guard).push(line);
                    drop(guard);
                    changed.notify_all();
                }
            }
        }
    })
}

/// One request through the router on `port`, on a new connection (`POST`s carry a small body);
/// the whole answer, status line first.
pub(crate) fn http(port: u16, method: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "connection refused".into();
    };
    // A router that never answers fails the request instead of hanging the test.
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let body = if method == "POST" { "amount=1" } else { "" };
    let request = format!(
        "{method} / HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_string(&mut answer);
    }
    answer
}

impl Running {
    /// Waits until `count` web instances have said they are ready; a large formation on a
    /// busy 2-core machine gets more time (100 instances boot in tens of seconds there).
    pub(crate) fn wait_ready(&self, count: usize) {
        let patience = DEADLINE + Duration::from_millis(600) * count as u32;
        self.wait_for_n_within(patience, count, "saying a web instance is ready", |l| {
            l.contains(" is ready on port ")
        });
    }
}

/// The part of a log line after `HH:MM:SS `.
pub(crate) fn body(line: &str) -> &str {
    line.get(9..).unwrap_or("")
}

/// The text an instance printed, from a line `HH:MM:SS name | text`.
pub(crate) fn text(line: &str) -> &str {
    line.split_once(" | ").map_or("", |(_, t)| t)
}

/// Processes whose command line contains `token`.
pub(crate) fn processes_with(token: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(token) {
            found.push(pid);
        }
    }
    found
}

/// Waits until no live process carries `token`; panics with the survivors otherwise.
pub(crate) fn assert_no_survivors(token: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let survivors = processes_with(token);
        if survivors.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for pid in &survivors {
                // SAFETY: cleaning up after a failed test.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            panic!("processes outlived the formation: {survivors:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A token unique to this test run, to mark processes.
pub(crate) fn token(name: &str) -> String {
    format!("shoal-test-{name}-{}", std::process::id())
}
