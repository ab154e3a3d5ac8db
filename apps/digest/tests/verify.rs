//! `shoal verify` on digest's own scenarios, with the real `shoal` binary of the same build and
//! the real Procfile: `verify/journey.http` (sign up, sign out, sign in, upload through the
//! form and the API, read the reports, a URL job the worker fails, my files, sign out) and
//! `verify/mid-job.http` (a URL job that takes several seconds, from `verify/slow_file.py`,
//! run here, while verify restarts the workers one after another).
//!
//! digest must be judged stateless — on a fresh SQLite database at an absolute path, and on a
//! fresh PostgreSQL schema with Redis sessions when `SHOAL_TEST_DATABASE_URL` and
//! `SHOAL_TEST_REDIS_URL` are set — with every request answered as the scenarios expect (a
//! scenario that broke early would otherwise pass with little compared), and with a worker
//! restarted in the middle of a job that a later claim then finished: the slow server saw a
//! download cut short while verify restarted a worker during the polling, and the same file
//! downloaded whole afterwards, and the database holds the job done with the file's digest.
//! And the journey with the sessions in a file inside each instance's working directory is
//! judged stateful: the scenario reaches the state it claims to check.
//!
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{CLEARED, PgSchema, app_dir, digest_bin, redis_url, sha256_hex, shoal_bin};

/// A whole verify run takes 10–30 s on a small, busy machine; this only stops a hung one.
const VERIFY_DEADLINE: Duration = Duration::from_secs(600);

/// The seed of the shuffled rounds' plan: fixed, so that a failure can be repeated with
/// `shoal verify --seed 1` (it plans 27 restarts, the most of the seeds tried).
const SEED: &str = "1";

/// What each request of `journey.http` answers in the baseline, in order.
const JOURNEY_STATUSES: [u64; 22] = [
    303, // GET / → /signin
    200, // GET /signup
    303, // POST /signup → /files
    200, // GET /files
    200, // GET /api/me
    303, // POST /signout → /signin
    401, // GET /api/me
    200, // GET /signin
    401, // POST /signin, wrong password
    303, // POST /signin → /files
    200, // GET /files
    303, // POST /files/upload → /jobs/N
    200, // GET /jobs/N
    200, // GET /api/jobs/N
    201, // POST /api/uploads
    200, // GET /api/jobs/M
    200, // GET /api/jobs
    303, // POST /files/url → /jobs/K
    200, // GET /files, the URL job failed
    303, // POST /signout
    303, // GET /files → /signin
    401, // GET /api/jobs
];

/// What each request of `mid-job.http` answers in the baseline, in order.
const MID_JOB_STATUSES: [u64; 6] = [
    200, // GET /signup
    303, // POST /signup → /files
    200, // GET /files
    303, // POST /files/url → /jobs/N
    200, // GET /files, until a worker is downloading
    200, // GET /files, until the job is done
];

/// The size of `slow_file.py`'s file: 8 MiB, as `mid-job.http` expects.
const SLOW_FILE_SIZE: usize = 8 << 20;

/// A finished `shoal verify` run: its exit status, what it printed, its JSON report.
struct Verified {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    report: Option<Value>,
}

impl Verified {
    fn show(&self) -> String {
        format!(
            "exit: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

fn journey() -> PathBuf {
    app_dir().join("verify/journey.http")
}

/// `shoal verify -f Procfile ARGS… --seed 1` with `env` on top of a cleaned environment and a
/// private `TMPDIR`.
fn verify(args: &[PathBuf], env: &[(&str, &str)]) -> Verified {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("stdout");
    let err = tmp.path().join("stderr");
    let json = tmp.path().join("report.json");
    let mut command = Command::new(shoal_bin());
    command
        .arg("verify")
        .arg("-f")
        .arg(app_dir().join("Procfile"))
        .args(args)
        .args(["--seed", SEED, "--json"])
        .arg(&json)
        .env("TMPDIR", tmp.path())
        .env("DIGEST_BIN", digest_bin())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    for var in CLEARED {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start shoal verify");
    let deadline = Instant::now() + VERIFY_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for shoal verify") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "shoal verify did not finish within {VERIFY_DEADLINE:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Verified {
        status,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        report: std::fs::read(&json)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
    }
}

/// Exit 0, "stateless", every request of every scenario answered in the baseline as
/// `statuses` (one list per scenario) expects and compared in every round, nothing written to
/// the app's directory.
fn assert_stateless(run: &Verified, statuses: &[&[u64]]) {
    assert_eq!(run.status.code(), Some(0), "{}", run.show());
    assert!(
        run.stdout.starts_with("shoal verify: stateless"),
        "{}",
        run.show()
    );
    let report = run.report.as_ref().expect("the JSON report");
    assert_eq!(report["verdict"], "stateless", "{}", run.show());
    assert_eq!(report["notes"], Value::Array(Vec::new()), "{}", run.show());
    assert_eq!(
        report["local_writes"],
        Value::Array(Vec::new()),
        "{}",
        run.show()
    );
    assert!(report["restarts"].as_u64() > Some(0), "{}", run.show());
    let scenarios = report["scenarios"].as_array().expect("the scenarios");
    assert_eq!(scenarios.len(), statuses.len(), "{}", run.show());
    for (scenario, expected) in scenarios.iter().zip(statuses) {
        let requests = scenario["requests"]
            .as_array()
            .expect("the scenario's requests");
        let answered: Vec<u64> = requests
            .iter()
            .map(|r| r["baseline_status"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(answered, *expected, "{}", run.show());
        for request in requests {
            assert_eq!(
                request["divergences"],
                Value::Array(Vec::new()),
                "{}",
                run.show()
            );
        }
    }
}

/// `verify/slow_file.py`, started on a free port for one test and stopped with it.
struct SlowFile {
    child: Child,
    url: String,
    /// Its lines after the first: one JSON object per download that ended.
    lines: Arc<Mutex<Vec<String>>>,
}

/// A download `slow_file.py` served, from its line.
#[derive(Debug)]
struct Download {
    path: String,
    start_ms: u64,
    end_ms: u64,
    sent: u64,
    size: u64,
}

impl SlowFile {
    fn start() -> SlowFile {
        let mut child = Command::new("python3")
            .arg(app_dir().join("verify/slow_file.py"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 verify/slow_file.py");
        let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut url = String::new();
        stdout.read_line(&mut url).expect("its address");
        let url = url.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "not an address: `{url}`"
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        SlowFile { child, url, lines }
    }

    fn downloads(&self) -> Vec<Download> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("a JSON line");
                let number = |key: &str| v[key].as_u64().expect(key);
                Download {
                    path: v["path"].as_str().expect("path").to_owned(),
                    start_ms: number("start_ms"),
                    end_ms: number("end_ms"),
                    sent: number("sent"),
                    size: number("size"),
                }
            })
            .collect()
    }
}

impl Drop for SlowFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both scenarios in one run, the slow file's URL given to `mid-job.http`, the workers set up
/// by `verify/mid-job.env`.
fn verify_both(slow: &SlowFile, env: &[(&str, &str)]) -> Verified {
    let mut env = env.to_vec();
    env.push(("DIGEST_SLOW_URL", &slow.url));
    verify(
        &[
            "-e".into(),
            app_dir().join("verify/mid-job.env"),
            journey(),
            app_dir().join("verify/mid-job.http"),
        ],
        &env,
    )
}

/// A URL job of the database: its URL, state and report's SHA-256.
type UrlJob = (String, String, Option<String>);

const URL_JOBS: &str = "SELECT jobs.url, jobs.state, reports.sha256 FROM jobs
    LEFT JOIN reports ON reports.job_id = jobs.id WHERE jobs.kind = 'url' ORDER BY jobs.id";

/// Proves that a worker was restarted in the middle of a job while verify polled for it, and
/// that a later claim finished the job: `slow_file.py` saw a download cut short while the
/// restart was made, then the same file (the same replay's job) downloaded whole after it;
/// and every slow-file job of the database is done with the file's SHA-256.
fn assert_restarted_mid_job(run: &Verified, slow: &SlowFile, jobs: &[UrlJob]) {
    let report = run.report.as_ref().expect("the JSON report");
    let downloads = slow.downloads();
    let restarts: Vec<&Value> = report["restarts_made"]
        .as_array()
        .expect("the restarts made")
        .iter()
        .filter(|r| r["type"] == "worker" && r["after_try"].is_u64())
        .collect();
    let mut mid_job: Vec<(&Value, &Download)> = Vec::new();
    for restart in &restarts {
        let at = restart["at_ms"].as_u64().expect("at_ms");
        for cut in &downloads {
            let finished_later = downloads.iter().any(|later| {
                later.path == cut.path && later.sent == later.size && later.start_ms >= at
            });
            if cut.sent < cut.size && (cut.start_ms..=cut.end_ms).contains(&at) && finished_later {
                mid_job.push((restart, cut));
            }
        }
    }
    assert!(
        !mid_job.is_empty(),
        "no worker was restarted during the polling while its download ran and then finished by a later claim\nrestarts while polling: {restarts:#?}\ndownloads: {downloads:#?}\n{}",
        run.show()
    );
    let expected = sha256_hex(&slow_file_bytes());
    let slow_jobs: Vec<&UrlJob> = jobs
        .iter()
        .filter(|(url, _, _)| url.starts_with(&slow.url))
        .collect();
    // Two baseline runs and three rounds, one job each.
    assert_eq!(slow_jobs.len(), 5, "{jobs:?}");
    for (url, state, sha256) in slow_jobs {
        assert_eq!(state, "done", "{url}: {jobs:?}");
        assert_eq!(sha256.as_deref(), Some(expected.as_str()), "{url}");
    }
    for (_, cut) in &mid_job {
        assert!(
            jobs.iter()
                .any(|(url, state, _)| url.ends_with(&cut.path) && state == "done"),
            "the job of `{}` is not done: {jobs:?}",
            cut.path
        );
    }
}

/// `slow_file.py`'s file: the bytes 0 to 250 over and over.
fn slow_file_bytes() -> Vec<u8> {
    (0..SLOW_FILE_SIZE).map(|i| (i % 251) as u8).collect()
}

#[test]
fn the_scenarios_are_stateless_on_sqlite_with_a_worker_restarted_mid_job() {
    let data = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", data.path().join("digest.db").display());
    let slow = SlowFile::start();
    let run = verify_both(&slow, &[("DATABASE_URL", &url)]);
    assert_stateless(&run, &[&JOURNEY_STATUSES, &MID_JOB_STATUSES]);
    // With two workers, restarted between requests and while the jobs were polled for; and
    // what was seen in scratch directories is the slow file's download in a worker's, while
    // its job ran (verify looks after every request, and when an instance stops): an upload
    // or a download only passes through scratch.
    let report = run.report.as_ref().expect("the JSON report");
    assert_eq!(
        report["formation"],
        serde_json::json!([{"type": "web", "instances": 3}, {"type": "worker", "instances": 2}]),
        "{}",
        run.show()
    );
    assert!(
        report["worker_restarts"].as_u64() > Some(0),
        "{}",
        run.show()
    );
    for write in report["scratch_writes"].as_array().expect("scratch writes") {
        let (instance, path) = (write["instance"].as_str(), write["path"].as_str());
        assert!(
            instance.is_some_and(|i| i.starts_with("worker."))
                && path.is_some_and(
                    |p| p.starts_with("shoal-kit-scratch-") && p.ends_with("/download")
                ),
            "{write}\n{}",
            run.show()
        );
    }
    let jobs = block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
        let jobs: Vec<UrlJob> = sqlx::query_as(URL_JOBS)
            .fetch_all(&pool)
            .await
            .expect("the URL jobs");
        pool.close().await;
        jobs
    });
    assert_restarted_mid_job(&run, &slow, &jobs);
    // The database and the sibling session store are the shared files, as documented.
    assert!(data.path().join("digest.db").is_file());
    assert!(data.path().join("digest-sessions.db").is_file());
}

#[test]
fn the_scenarios_are_stateless_on_postgres_with_redis_sessions_with_a_worker_restarted_mid_job() {
    const TEST: &str = "the_scenarios_are_stateless_on_postgres_with_redis_sessions_with_a_worker_restarted_mid_job";
    let Some(schema) = block_on(PgSchema::create(TEST)) else {
        return;
    };
    let Some(redis) = redis_url(TEST) else {
        return;
    };
    let slow = SlowFile::start();
    let run = verify_both(
        &slow,
        &[("DATABASE_URL", &schema.url), ("SESSION_URL", &redis)],
    );
    assert_stateless(&run, &[&JOURNEY_STATUSES, &MID_JOB_STATUSES]);
    // Every replay of each scenario signed up its own user: two baseline runs and three
    // rounds.
    let (users, jobs) = block_on(async {
        let pool = sqlx::PgPool::connect(&schema.url).await.expect("connect");
        let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .expect("count users");
        let jobs: Vec<UrlJob> = sqlx::query_as(URL_JOBS)
            .fetch_all(&pool)
            .await
            .expect("the URL jobs");
        pool.close().await;
        (users, jobs)
    });
    assert_eq!(users, 10);
    assert_restarted_mid_job(&run, &slow, &jobs);
}

/// The same journey with the session store in a file relative to the working directory, so
/// in each instance's private copy of the app: what one instance knows of a session, the next
/// one does not. verify must say so, and name the file.
#[test]
fn sessions_in_a_local_file_make_the_journey_stateful() {
    let data = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", data.path().join("digest.db").display());
    let run = verify(
        &[journey()],
        &[
            ("DATABASE_URL", &url),
            ("SESSION_URL", "sqlite://sessions.db"),
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.show());
    assert!(
        run.stdout.starts_with("shoal verify: STATEFUL"),
        "{}",
        run.show()
    );
    // Signing up refuses the token the form was sent with: the session is not there.
    assert!(
        run.stdout.contains("#3 POST /signup") && run.stdout.contains("status: 303 → 403"),
        "{}",
        run.show()
    );
    assert!(
        run.stdout.contains("created `sessions.db`")
            && run.stdout.contains("state kept on local disk"),
        "{}",
        run.show()
    );
    // The instances wrote into their private copies, never into the app directory.
    assert!(!app_dir().join("sessions.db").exists());
}

/// Runs `future` on a runtime of its own (these tests are synchronous).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}
