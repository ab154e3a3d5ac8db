//! The queue against both databases, driven directly with a controlled clock: concurrent
//! claimers never get the same job, a lease that runs out lets another worker take the job
//! (and fences the first one out), a release gives the job back at once, and failures are
//! retried a bounded number of times before the job fails with its reason.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use digest_app::config::DatabaseUrl;
use digest_app::db::jobs::{self, Report};
use digest_app::db::{Db, schema, users};
use digest_app::queue::{self, Outcome};

const LEASE: Duration = Duration::from_secs(2);
const T0: i64 = 1_700_000_000_000;

/// The database of one test: an SQLite file or a fresh PostgreSQL schema.
struct TestDb {
    db: Db,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<support::PgSchema>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("queue.db").display());
    let db = Db::connect(&DatabaseUrl::parse(&url).unwrap())
        .await
        .unwrap();
    schema::migrate(&db).await.unwrap();
    TestDb {
        db,
        _dir: Some(dir),
        _schema: None,
    }
}

async fn postgres(test: &str) -> Option<TestDb> {
    let schema = support::PgSchema::create(test).await?;
    let db = Db::connect(&DatabaseUrl::parse(&schema.url).unwrap())
        .await
        .unwrap();
    schema::migrate(&db).await.unwrap();
    Some(TestDb {
        db,
        _dir: None,
        _schema: Some(schema),
    })
}

async fn user(db: &Db) -> i64 {
    users::create(db, "queue-tester", "not-a-real-hash", T0)
        .await
        .unwrap()
        .unwrap()
}

fn report() -> Report {
    Report {
        size: 3,
        sha256: "ab".repeat(32),
        blake3: "cd".repeat(32),
        mime: "text/plain".to_owned(),
        description: "text".to_owned(),
        text_lines: Some(1),
        text_encoding: Some("ASCII".to_owned()),
        details: "{}".to_owned(),
    }
}

async fn state_of(db: &Db, user: i64, job: i64) -> jobs::Job {
    jobs::get(db, user, job).await.unwrap().unwrap().0
}

async fn concurrent_claimers_never_share_a_job(db: Db) {
    let owner = user(&db).await;
    let mut expected = BTreeSet::new();
    for i in 0..40 {
        let job = jobs::create_url_job(&db, owner, &format!("https://example.com/{i}"), T0)
            .await
            .unwrap();
        expected.insert(job.id);
    }
    let claimers: Vec<_> = (0..6)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(claim) = queue::claim(&db, &format!("worker.{n}"), LEASE, T0)
                    .await
                    .unwrap()
                {
                    mine.push(claim.job_id);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a job was claimed twice: {all:?}");
    assert_eq!(unique, expected, "every job is claimed exactly once");
}

async fn an_ended_lease_passes_the_job_on_and_fences_the_first_worker(db: Db) {
    let owner = user(&db).await;
    let job = jobs::create_url_job(&db, owner, "https://example.com/a", T0)
        .await
        .unwrap();
    let first = queue::claim(&db, "worker.1", LEASE, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.job_id, first.attempts), (job.id, 1));
    // Still leased, even to a worker that asks a moment before the end.
    assert!(
        queue::claim(&db, "worker.2", LEASE, T0 + 1999)
            .await
            .unwrap()
            .is_none()
    );
    // A heartbeat extends the lease.
    assert!(
        queue::heartbeat(&db, &first, LEASE, 10, Some(100), T0 + 1000)
            .await
            .unwrap()
    );
    assert!(
        queue::claim(&db, "worker.2", LEASE, T0 + 2500)
            .await
            .unwrap()
            .is_none()
    );
    let running = state_of(&db, owner, job.id).await;
    assert_eq!(
        (
            running.state.as_str(),
            running.bytes_done,
            running.bytes_total
        ),
        ("running", 10, Some(100))
    );
    // The worker died: its lease runs out and another worker takes the job.
    let second = queue::claim(&db, "worker.2", LEASE, T0 + 3000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.job_id, second.attempts), (job.id, 2));
    assert_ne!(first.token, second.token);
    // The first worker comes back to life: nothing it does counts any more.
    assert!(
        !queue::heartbeat(&db, &first, LEASE, 50, Some(100), T0 + 3100)
            .await
            .unwrap()
    );
    assert!(
        !queue::complete(&db, &first, &report(), T0 + 3200)
            .await
            .unwrap()
    );
    assert!(!queue::release(&db, &first, T0 + 3200).await.unwrap());
    assert_eq!(
        queue::fail(&db, &first, "late", true, 3, T0 + 3200)
            .await
            .unwrap(),
        Outcome::LostLease
    );
    assert_eq!(jobs::report_count(&db, job.id).await.unwrap(), 0);
    assert!(
        queue::complete(&db, &second, &report(), T0 + 3300)
            .await
            .unwrap()
    );
    let done = state_of(&db, owner, job.id).await;
    assert_eq!(done.state, "done");
    assert_eq!(jobs::report_count(&db, job.id).await.unwrap(), 1);
    // A done job is never claimed again, however late.
    assert!(
        queue::claim(&db, "worker.3", LEASE, T0 + 100_000)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_release_gives_the_job_back_at_once(db: Db) {
    let owner = user(&db).await;
    let job = jobs::create_url_job(&db, owner, "https://example.com/b", T0)
        .await
        .unwrap();
    let claim = queue::claim(&db, "worker.1", LEASE, T0)
        .await
        .unwrap()
        .unwrap();
    assert!(queue::release(&db, &claim, T0 + 10).await.unwrap());
    let queued = state_of(&db, owner, job.id).await;
    assert_eq!((queued.state.as_str(), queued.attempts), ("queued", 0));
    // Long before the lease would have ended, another worker gets it, as a first attempt.
    let again = queue::claim(&db, "worker.2", LEASE, T0 + 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.job_id, again.attempts), (job.id, 1));
}

async fn failures_are_retried_then_the_job_fails_with_its_reason(db: Db) {
    let owner = user(&db).await;
    let job = jobs::create_url_job(&db, owner, "https://example.com/c", T0)
        .await
        .unwrap();
    let mut now = T0;
    for attempt in 1..=3 {
        let claim = queue::claim(&db, "worker.1", LEASE, now)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("attempt {attempt} is due at {now}"));
        assert_eq!(claim.attempts, attempt);
        let reason = format!("the server answered 503 Service Unavailable ({attempt})");
        let outcome = queue::fail(&db, &claim, &reason, true, 3, now)
            .await
            .unwrap();
        match outcome {
            Outcome::Retry { at } => {
                assert!(attempt < 3, "attempt {attempt} must be the last");
                assert!(at > now, "a retry waits");
                // Not due before its time.
                assert!(
                    queue::claim(&db, "worker.1", LEASE, at - 1)
                        .await
                        .unwrap()
                        .is_none()
                );
                let waiting = state_of(&db, owner, job.id).await;
                assert_eq!(waiting.state, "queued");
                assert_eq!(waiting.error.as_deref(), Some(reason.as_str()));
                now = at;
            }
            Outcome::Failed => assert_eq!(attempt, 3),
            Outcome::LostLease => panic!("the lease was ours"),
        }
    }
    let failed = state_of(&db, owner, job.id).await;
    assert_eq!(failed.state, "failed");
    assert_eq!(
        failed.error.as_deref(),
        Some("the server answered 503 Service Unavailable (3)")
    );
    assert!(failed.finished_at.is_some());
    assert!(
        queue::claim(&db, "worker.1", LEASE, now + 1_000_000)
            .await
            .unwrap()
            .is_none()
    );

    // An error that cannot get better fails at once.
    let job = jobs::create_url_job(&db, owner, "https://10.0.0.1/x", now)
        .await
        .unwrap();
    let claim = queue::claim(&db, "worker.1", LEASE, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.job_id, job.id);
    let outcome = queue::fail(
        &db,
        &claim,
        "refused to fetch from `10.0.0.1`",
        false,
        3,
        now,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(state_of(&db, owner, job.id).await.state, "failed");
}

async fn migrations_are_idempotent_and_concurrent(db: Db) {
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { schema::migrate(&db).await })
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap(), Vec::<i64>::new());
    }
    assert_eq!(
        schema::current_version(&db).await.unwrap(),
        schema::latest_version()
    );
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite().await.db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) = super::postgres(stringify!($name)).await else {
                    return;
                };
                super::$name(t.db.clone()).await;
                drop(t);
            }
        }
    };
}

on_both!(concurrent_claimers_never_share_a_job);
on_both!(an_ended_lease_passes_the_job_on_and_fences_the_first_worker);
on_both!(a_release_gives_the_job_back_at_once);
on_both!(failures_are_retried_then_the_job_fails_with_its_reason);
on_both!(migrations_are_idempotent_and_concurrent);

/// A fresh database and many processes' worth of concurrent first connections and migrations:
/// every process connects (SQLite refuses concurrent switches of a fresh file to WAL at once,
/// without waiting) and exactly one applies the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_migrations_apply_once_on_sqlite() {
    for round in 0..25 {
        let dir = tempfile::tempdir().unwrap();
        let url =
            DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("m.db").display())).unwrap();
        let runs: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let db = Db::connect(&url).await.map_err(|e| e.to_string())?;
                    schema::migrate(&db).await.map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut applied = Vec::new();
        for run in runs {
            let result = run.await.unwrap();
            applied.extend(result.unwrap_or_else(|e| panic!("round {round}: {e}")));
        }
        assert_eq!(applied, vec![schema::latest_version()], "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_migrations_apply_once_on_postgres() {
    let Some(pg) = support::PgSchema::create("first_migrations").await else {
        return;
    };
    let url = DatabaseUrl::parse(&pg.url).unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let db = Db::connect(&url).await.unwrap();
                schema::migrate(&db).await.unwrap()
            })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap());
    }
    assert_eq!(applied, vec![schema::latest_version()]);
}
