//! The whole user journey over HTTP against digest run by the real `shoal` from its real
//! Procfile, as a formation of two web and two worker instances behind shoal's router: sign
//! up, sign in, upload a file, submit a URL served by a local server, wait for the report,
//! check the digests against values computed here, sign out (then the API refuses).
//!
//! Once on the SQLite default (no `DATABASE_URL`, a private `XDG_DATA_HOME`) and once on
//! PostgreSQL (a fresh schema) with Redis sessions, when `SHOAL_TEST_DATABASE_URL` and
//! `SHOAL_TEST_REDIS_URL` are set.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::http::Client;
use support::{DEADLINE, FileServer, Formation, blake3_hex, noise, sha256_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_on_the_sqlite_default() {
    let data = tempfile::tempdir().unwrap();
    let data_home = data.path().to_str().unwrap();
    let formation = Formation::start(
        "web=2,worker=2",
        &[("XDG_DATA_HOME", data_home), ("DIGEST_ALLOW_LOOPBACK", "1")],
    )
    .await;
    journey(&formation).await;
    // The default database and session store are where the README says, shared by all.
    assert!(data.path().join("digest/digest.db").is_file());
    assert!(data.path().join("digest/digest-sessions.db").is_file());
    stop(formation).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_on_postgres_with_redis_sessions() {
    let Some(redis) = support::redis_url("journey_on_postgres_with_redis_sessions") else {
        return;
    };
    let Some(pg) = support::PgSchema::create("journey").await else {
        return;
    };
    let formation = Formation::start(
        "web=2,worker=2",
        &[
            ("DATABASE_URL", &pg.url),
            ("SESSION_URL", &redis),
            ("DIGEST_ALLOW_LOOPBACK", "1"),
        ],
    )
    .await;
    journey(&formation).await;
    stop(formation).await;
}

async fn stop(formation: Formation) {
    let output = formation.output();
    assert!(!output.contains("panicked"), "{output}");
    let code = formation.stop().await;
    // shoal exits 128 + SIGTERM when it was stopped by SIGTERM.
    assert_eq!(code, Some(143));
}

async fn journey(formation: &Formation) {
    let upload = noise(1_500_000, 7);
    let text: String = (1..=20_000)
        .map(|i| format!("line {i}: café au lait\n"))
        .collect();
    let server = FileServer::start(text.clone().into_bytes(), None).await;
    let client = formation.client();

    // Sign up (which signs in), sign out, sign in again.
    let user = format!("ada-{}", support::unique());
    let credentials = json!({ "username": user, "password": "correct horse battery" });
    let r = client
        .api("POST", "/api/signup", Some(credentials.clone()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = client.api("POST", "/api/signout", None).await;
    assert_eq!(r.status, 204);
    assert_eq!(client.get("/api/me").await.status, 401);
    let r = client.api("POST", "/api/signin", Some(credentials)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(client.get("/api/me").await.json()["username"], user);

    // Upload: digested within the request.
    let r = client
        .multipart(
            "/api/uploads",
            &[("x-requested-with", "digest-tests")],
            &[],
            "../../noise.bin",
            &upload,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let uploaded = r.json();
    assert_eq!(uploaded["job"]["state"], "done");
    assert_eq!(uploaded["job"]["file_name"], "noise.bin");
    check_report(&uploaded["report"], &upload);
    assert_eq!(uploaded["report"]["text_lines"], Value::Null);

    // A URL: queued for a worker, which downloads and digests it.
    let r = client
        .api(
            "POST",
            "/api/jobs",
            Some(json!({ "url": server.url("/menu.txt") })),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["job"]["id"].as_i64().unwrap();
    let done = wait_until_finished(&client, id).await;
    assert_eq!(done["job"]["state"], "done", "{done}");
    check_report(&done["report"], text.as_bytes());
    assert_eq!(done["report"]["text_lines"], 20_000);
    assert_eq!(done["report"]["text_encoding"], "UTF-8");
    assert_eq!(done["job"]["bytes_done"], text.len());
    assert_eq!(server.requests(), 1);

    // Both show in the list, and the report page shows the digests.
    let jobs = client.get("/api/jobs").await.json();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2, "{jobs}");
    let page = client.get(&format!("/jobs/{id}")).await;
    assert_eq!(page.status, 200);
    let sha = sha256_hex(text.as_bytes());
    assert!(
        page.text()
            .contains(&format!(r#"id="report-sha256">{sha}<"#)),
        "{}",
        page.text()
    );
    let script = page
        .text()
        .split('"')
        .find(|s| s.starts_with("/assets/app.") && s.ends_with(".js"))
        .expect("the page links its fingerprinted script")
        .to_owned();
    let asset = client.get(&script).await;
    assert_eq!(asset.status, 200);
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // Sign out: the session is gone on the server, the API refuses.
    let r = client.api("POST", "/api/signout", None).await;
    assert_eq!(r.status, 204);
    assert_eq!(client.get("/api/jobs").await.status, 401);
    assert_eq!(client.get(&format!("/api/jobs/{id}")).await.status, 401);

    // Someone else cannot see the jobs either.
    let other = formation.client();
    let r = other
        .api(
            "POST",
            "/api/signup",
            Some(json!({ "username": format!("eve-{}", support::unique()), "password": "not ada's password" })),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(other.get(&format!("/api/jobs/{id}")).await.status, 404);

    // The requests went through the router to more than one web instance.
    let output = formation.output();
    for instance in ["instance=web.1", "instance=web.2"] {
        assert!(
            output.contains(instance),
            "no request reached {instance}:\n{output}"
        );
    }
}

fn check_report(report: &Value, data: &[u8]) {
    assert_eq!(report["size"], data.len(), "{report}");
    assert_eq!(report["sha256"], sha256_hex(data), "{report}");
    assert_eq!(report["blake3"], blake3_hex(data), "{report}");
}

/// Polls the job until it is done or failed.
async fn wait_until_finished(client: &Client, id: i64) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = client.get(&format!("/api/jobs/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        if matches!(body["job"]["state"].as_str(), Some("done" | "failed")) {
            return body;
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
