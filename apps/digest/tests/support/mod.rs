//! Test support for digest: the binaries, free ports, fresh databases (a PostgreSQL schema
//! per test, an SQLite file in a temporary directory), a formation run by the real `shoal`,
//! a small HTTP client with a cookie jar, and a local file server that can trickle its body.

#![allow(dead_code)] // each test binary uses its own part of this module

pub(crate) mod http;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous, because test machines are small and busy: tests wait for conditions, not time.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// Says on stderr, past the harness's capture, that a test did not run.
pub(crate) fn not_run(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOT RUN: {test}: {why}");
}

pub(crate) fn digest_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_digest"))
}

/// The `shoal` binary of the same build (`cargo test --workspace` builds it).
pub(crate) fn shoal_bin() -> PathBuf {
    let path = digest_bin().with_file_name("shoal");
    assert!(
        path.exists(),
        "`{}` is missing: run `cargo build -p shoal` first, or the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The app's directory: its Procfile, its `verify/` scenario.
pub(crate) fn app_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn procfile() -> PathBuf {
    app_dir().join("Procfile")
}

/// `len` deterministic pseudo-random bytes (xorshift from `seed`), so tests need no data file.
pub(crate) fn generated(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// A random lowercase hex string, for names that must not collide between test runs.
pub(crate) fn unique() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random bytes");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A formation port P for `shoal start -p P`: P and the instance ports laid out after it (the
/// first ten of each of three blocks, P+100+n, P+200+n, P+300+n) are free now, and all of them
/// lie below the kernel's ephemeral range (32768 and up), so no outgoing connection (to the
/// database, between tests) can be given one of them before the formation binds it.
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

/// A fresh PostgreSQL schema on `SHOAL_TEST_DATABASE_URL`, dropped at the end of the test.
pub(crate) struct PgSchema {
    base: String,
    pub(crate) name: String,
    /// The server URL with `search_path` set to the schema.
    pub(crate) url: String,
}

impl PgSchema {
    /// `None` (after saying so) when `SHOAL_TEST_DATABASE_URL` is unset.
    pub(crate) async fn create(test: &str) -> Option<PgSchema> {
        let Some(base) = std::env::var("SHOAL_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            not_run(test, "`SHOAL_TEST_DATABASE_URL` is not set");
            return None;
        };
        let name = format!("digest_{}_{}", test.replace('-', "_"), unique());
        let pool = sqlx::PgPool::connect(&base)
            .await
            .expect("connect to SHOAL_TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .expect("create a test schema");
        pool.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema { base, name, url })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop runs inside and outside runtimes alike: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {name} CASCADE"
                    )))
                    .execute(&pool)
                    .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// `SHOAL_TEST_REDIS_URL`, or `None` after saying the test did not run.
pub(crate) fn redis_url(test: &str) -> Option<String> {
    match std::env::var("SHOAL_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            not_run(test, "`SHOAL_TEST_REDIS_URL` is not set");
            None
        }
    }
}

/// Environment variables a formation must not inherit from the test's environment.
pub(crate) const CLEARED: &[&str] = &[
    "PORT",
    "DATABASE_URL",
    "SESSION_URL",
    "DIGEST_MAX_BYTES",
    "DIGEST_ALLOW_LOOPBACK",
    "DIGEST_LEASE_SECS",
    "DIGEST_MAX_ATTEMPTS",
    "DIGEST_POLL_MAX_MS",
    "XDG_DATA_HOME",
];

/// digest run by `shoal start` from its real Procfile, with a private `TMPDIR` (so shoal's
/// runtime directory and every instance's scratch are the test's own).
pub(crate) struct Formation {
    child: Child,
    pub(crate) port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    tmp: tempfile::TempDir,
}

impl Formation {
    /// Starts `shoal start -m SPEC` with `env` on top of a cleaned environment, and waits
    /// until the router answers `/healthz` with 200.
    pub(crate) async fn start(spec: &str, env: &[(&str, &str)]) -> Formation {
        let tmp = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut command = Command::new(shoal_bin());
        command
            .args(["start", "-f"])
            .arg(procfile())
            .args(["-m", spec, "-p", &port.to_string(), "-t", "10"])
            .args(["--health-path", "/healthz", "--no-color"])
            .env("TMPDIR", tmp.path())
            .env("DIGEST_BIN", digest_bin())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in CLEARED {
            command.env_remove(var);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start shoal");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let formation = Formation {
            child,
            port,
            lines,
            tmp,
        };
        formation.wait_healthy().await;
        formation
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn client(&self) -> http::Client {
        http::Client::new(([127, 0, 0, 1], self.port).into())
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + DEADLINE;
        let client = self.client();
        loop {
            if let Ok(reply) = client.try_send("GET", "/healthz", &[], Vec::new()).await
                && reply.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the formation did not become healthy within {DEADLINE:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything shoal printed so far.
    pub(crate) fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for the first line (from line `from` on) that `matches` accepts; returns its
    /// index and text.
    pub(crate) async fn wait_for_line(
        &self,
        from: usize,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some((i, l)) = lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| matches(l))
                {
                    return (i, l.clone());
                }
            }
            assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for a line {what}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the formation with SIGTERM and returns shoal's exit code.
    pub(crate) async fn stop(mut self) -> Option<i32> {
        signal(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for shoal") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "shoal did not stop within {DEADLINE:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The private temporary directory (shoal's runtime directory and scratch are in it).
    pub(crate) fn tmp(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + DEADLINE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

/// The pid in a worker's `job N: claimed (attempt A, pid P)` line.
pub(crate) fn claimed_pid(line: &str) -> i32 {
    line.rsplit("pid ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in `{line}`"))
}

/// Deterministic pseudo-random bytes (xorshift), so the expected digests come from the test.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// A local HTTP server answering every request with the same body, optionally trickled
/// (`chunk` bytes every `pause`) or held part-way ([`FileServer::start_held`]), counting the
/// requests it got.
pub(crate) struct FileServer {
    pub(crate) addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    pub(crate) async fn start(body: Vec<u8>, trickle: Option<(usize, Duration)>) -> FileServer {
        FileServer::serve(body, trickle, None).await
    }

    /// A server that sends the first `held` bytes of `body`, then holds the rest back until
    /// the returned [`Release`] is released (or for [`DEADLINE`] at most), so a test can look
    /// at a download in progress for as long as it needs, without guessing at timing.
    pub(crate) async fn start_held(body: Vec<u8>, held: usize) -> (FileServer, Release) {
        let (release, released) = tokio::sync::watch::channel(false);
        let server = FileServer::serve(body, None, Some((held, released))).await;
        (server, Release(release))
    }

    async fn serve(
        body: Vec<u8>,
        trickle: Option<(usize, Duration)>,
        hold: Option<(usize, tokio::sync::watch::Receiver<bool>)>,
    ) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the file server");
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(body);
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = body.clone();
                let counter = counter.clone();
                let mut hold = hold.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut body = &body[..];
                    if let Some((held, released)) = &mut hold {
                        let (first, rest) = body.split_at((*held).min(body.len()));
                        if stream.write_all(first).await.is_err() || stream.flush().await.is_err() {
                            return;
                        }
                        let _ = tokio::time::timeout(DEADLINE, released.wait_for(|r| *r)).await;
                        body = rest;
                    }
                    match trickle {
                        None => {
                            let _ = stream.write_all(body).await;
                        }
                        Some((chunk, pause)) => {
                            for part in body.chunks(chunk) {
                                if stream.write_all(part).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(pause).await;
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        FileServer {
            addr,
            requests,
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests it has answered (or started answering).
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lets a [`FileServer::start_held`] send the rest of its body, to every request from now on.
pub(crate) struct Release(tokio::sync::watch::Sender<bool>);

impl Release {
    pub(crate) fn release(&self) {
        self.0.send_replace(true);
    }
}
