//! Workers that die or are stopped mid-download, under the real `shoal`:
//! - SIGKILL: the job's lease runs out and another worker finishes it, exactly once (one
//!   report row, state done);
//! - SIGTERM: the worker gives the job back at once and exits; the job is taken again long
//!   before its lease would have run out, and finishes.

mod support;

use std::time::{Duration, Instant};

use digest_app::config::DatabaseUrl;
use digest_app::db::{Db, jobs};
use serde_json::{Value, json};
use support::http::Client;
use support::{DEADLINE, FileServer, Formation, blake3_hex, noise, sha256_hex};

/// 2 MiB, 32 KiB every 50 ms: a download takes about 3 s.
fn slow_file() -> (Vec<u8>, Option<(usize, Duration)>) {
    (
        noise(2 << 20, 11),
        Some((32 << 10, Duration::from_millis(50))),
    )
}

async fn signed_in(formation: &Formation) -> Client {
    let client = formation.client();
    let r = client
        .api(
            "POST",
            "/api/signup",
            Some(json!({ "username": format!("kim-{}", support::unique()), "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    client
}

async fn job(client: &Client, id: i64) -> Value {
    let r = client.get(&format!("/api/jobs/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Polls job `id` until `done` accepts it.
async fn wait_for_job(
    client: &Client,
    id: i64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let body = job(client, id).await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "job {id}: waited for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A URL job of a slow file, claimed by a worker and part-way through its download.
struct SlowJob {
    data: tempfile::TempDir,
    body: Vec<u8>,
    server: FileServer,
    formation: Formation,
    client: Client,
    id: i64,
    /// The output line of the first claim (it names the worker's pid), and its index.
    claim_line: String,
    claim_at: usize,
}

/// Starts `formation` (with leases of `lease_secs`), submits the slow file's URL and waits
/// until a worker has claimed it and its progress has reached the database.
async fn slow_job_in_progress(formation: &str, lease_secs: &str) -> SlowJob {
    let data = tempfile::tempdir().unwrap();
    let (body, trickle) = slow_file();
    let server = FileServer::start(body.clone(), trickle).await;
    let formation = Formation::start(
        formation,
        &[
            ("XDG_DATA_HOME", data.path().to_str().unwrap()),
            ("DIGEST_ALLOW_LOOPBACK", "1"),
            ("DIGEST_LEASE_SECS", lease_secs),
        ],
    )
    .await;
    let client = signed_in(&formation).await;
    let r = client
        .api(
            "POST",
            "/api/jobs",
            Some(json!({ "url": server.url("/slow.bin") })),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["job"]["id"].as_i64().unwrap();
    let claimed = format!("job {id}: claimed (attempt 1,");
    let (claim_at, claim_line) = formation
        .wait_for_line(0, "of the first claim", |l| l.contains(&claimed))
        .await;
    // Mid-download: progress has reached the database, and the file is not complete.
    let running = wait_for_job(&client, id, "progress", |j| {
        j["job"]["bytes_done"].as_i64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(running["job"]["state"], "running", "{running}");
    assert_eq!(running["job"]["bytes_total"], body.len());
    SlowJob {
        data,
        body,
        server,
        formation,
        client,
        id,
        claim_line,
        claim_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_finishes_exactly_once() {
    let SlowJob {
        data,
        body,
        server,
        formation,
        client,
        id,
        claim_line,
        claim_at: _,
    } = slow_job_in_progress("web=1,worker=2", "2").await;
    support::signal(support::claimed_pid(&claim_line), libc::SIGKILL);

    let done = wait_for_job(&client, id, "done", |j| {
        j["job"]["state"] != "running" && j["job"]["state"] != "queued"
    })
    .await;
    assert_eq!(done["job"]["state"], "done", "{done}");
    assert_eq!(done["job"]["attempts"], 2, "{done}");
    assert_eq!(done["report"]["sha256"], sha256_hex(&body));
    assert_eq!(done["report"]["blake3"], blake3_hex(&body));
    assert!(server.requests() >= 2, "the file was downloaded again");
    formation
        .wait_for_line(0, "of the second claim", |l| {
            l.contains(&format!("job {id}: claimed (attempt 2,"))
        })
        .await;

    // Exactly one report row, straight from the database.
    let url = format!(
        "sqlite://{}",
        data.path().join("digest/digest.db").display()
    );
    let db = Db::connect(&DatabaseUrl::parse(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(jobs::report_count(&db, id).await.unwrap(), 1);
    db.close().await;
    formation.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_releases_its_job_at_once() {
    // A lease far longer than the test's deadline: only a release lets the job go on in time.
    // The file server and the data directory are held to the end, not dropped here.
    let SlowJob {
        data: _data,
        body,
        server: _server,
        formation,
        client,
        id,
        claim_line,
        claim_at: first,
    } = slow_job_in_progress("web=1,worker=1", "600").await;
    let claimed = format!("job {id}: claimed (attempt 1,");
    support::signal(support::claimed_pid(&claim_line), libc::SIGTERM);
    formation
        .wait_for_line(first, "of the release", |l| {
            l.contains(&format!("job {id}: released (stopping)"))
        })
        .await;
    // shoal restarts the worker (it exited 0), which takes the job again as a first attempt.
    formation
        .wait_for_line(first + 1, "of the second claim", |l| l.contains(&claimed))
        .await;
    let done = wait_for_job(&client, id, "done", |j| j["job"]["state"] == "done").await;
    assert_eq!(
        done["job"]["attempts"], 1,
        "a release is not an attempt: {done}"
    );
    assert_eq!(done["report"]["sha256"], sha256_hex(&body));
    let output = formation.output();
    assert!(
        output.contains("worker.1 exited with code 0"),
        "the worker exits 0 on SIGTERM:\n{output}"
    );
    formation.stop().await;
}
