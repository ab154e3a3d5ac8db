//! `shoal verify` on digest's own scenario, `verify/journey.http` (sign up, sign out, sign in,
//! upload through the form and the API, read the reports, a URL job the worker fails, my
//! files, sign out), with the real `shoal` binary of the same build and the real Procfile.
//!
//! digest must be judged stateless — on a fresh SQLite database at an absolute path, and on a
//! fresh PostgreSQL schema with Redis sessions when `SHOAL_TEST_DATABASE_URL` and
//! `SHOAL_TEST_REDIS_URL` are set — with every request answered as the scenario expects (a
//! scenario that broke early would otherwise pass with little compared). And the same journey
//! with the sessions in a file inside each instance's working directory is judged stateful:
//! the scenario reaches the state it claims to check.
//!
mod support;

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{CLEARED, PgSchema, app_dir, digest_bin, redis_url, shoal_bin};

/// A whole verify run takes 10–30 s on a small, busy machine; this only stops a hung one.
const VERIFY_DEADLINE: Duration = Duration::from_secs(600);

/// The seed of the shuffled rounds' plan: fixed, so that a failure can be repeated with
/// `shoal verify --seed 1` (it plans 27 restarts, the most of the seeds tried).
const SEED: &str = "1";

/// What each request of `journey.http` answers in the baseline, in order.
const EXPECTED_STATUSES: [u64; 23] = [
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
    303, // POST /files/url → /jobs/K
    200, // GET /jobs/K, failed
    200, // GET /files
    200, // GET /api/jobs
    303, // POST /signout
    303, // GET /files → /signin
    401, // GET /api/jobs
];

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

/// `shoal verify -f Procfile verify/journey.http --seed 1` with `env` on top of a cleaned
/// environment and a private `TMPDIR`.
fn verify(env: &[(&str, &str)]) -> Verified {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("stdout");
    let err = tmp.path().join("stderr");
    let json = tmp.path().join("report.json");
    let mut command = Command::new(shoal_bin());
    command
        .arg("verify")
        .arg("-f")
        .arg(app_dir().join("Procfile"))
        .arg(app_dir().join("verify/journey.http"))
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

/// Exit 0, "stateless", every request answered in the baseline as the scenario expects and
/// compared in every round, nothing written to the app's directory.
fn assert_stateless(run: &Verified) {
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
    let requests = report["scenarios"][0]["requests"]
        .as_array()
        .expect("the scenario's requests");
    let statuses: Vec<u64> = requests
        .iter()
        .map(|r| r["baseline_status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, EXPECTED_STATUSES, "{}", run.show());
    for request in requests {
        assert_eq!(
            request["divergences"],
            Value::Array(Vec::new()),
            "{}",
            run.show()
        );
    }
}

#[test]
fn the_journey_is_stateless_on_sqlite() {
    let data = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", data.path().join("digest.db").display());
    let run = verify(&[("DATABASE_URL", &url)]);
    assert_stateless(&run);
    // With two workers, restarted between requests and while the URL job's page was polled
    // for (seed 1 plans both), and nothing left in any instance's scratch directory: an
    // upload or a download only passes through it.
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
    assert!(
        report["restarts_while_polling"].as_u64() > Some(0),
        "{}",
        run.show()
    );
    assert_eq!(
        report["scratch_writes"],
        Value::Array(Vec::new()),
        "{}",
        run.show()
    );
    // The database and the sibling session store are the shared files, as documented.
    assert!(data.path().join("digest.db").is_file());
    assert!(data.path().join("digest-sessions.db").is_file());
}

#[test]
fn the_journey_is_stateless_on_postgres_with_redis_sessions() {
    const TEST: &str = "the_journey_is_stateless_on_postgres_with_redis_sessions";
    let Some(schema) = block_on(PgSchema::create(TEST)) else {
        return;
    };
    let Some(redis) = redis_url(TEST) else {
        return;
    };
    let run = verify(&[("DATABASE_URL", &schema.url), ("SESSION_URL", &redis)]);
    assert_stateless(&run);
    // Every replay signed up its own user: two baseline runs and three rounds.
    let users: i64 = block_on(async {
        let pool = sqlx::PgPool::connect(&schema.url).await.expect("connect");
        let (n,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .expect("count users");
        pool.close().await;
        n
    });
    assert_eq!(users, 5);
}

/// The same journey with the session store in a file relative to the working directory, so
/// in each instance's private copy of the app: what one instance knows of a session, the next
/// one does not. verify must say so, and name the file.
#[test]
fn sessions_in_a_local_file_make_the_journey_stateful() {
    let data = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", data.path().join("digest.db").display());
    let run = verify(&[
        ("DATABASE_URL", &url),
        ("SESSION_URL", "sqlite://sessions.db"),
    ]);
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
