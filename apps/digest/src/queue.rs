//! The job queue in the database: claiming a job with a lease, keeping the lease alive,
//! and the three ways a claim ends (done, failed or retried, released).
//!
//! Every claim gets its own lease token (`INSTANCE:RANDOM`), and every later write is fenced
//! by it (`WHERE lease_owner = $token`): once a lease has ended and another worker has taken
//! the job, the first worker's progress, result and release change nothing. A job whose
//! worker died (killed, machine gone) is claimable again once `lease_until` has passed.
//!
//! - PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass over each
//!   other's rows instead of waiting.
//! - SQLite runs the same `UPDATE … WHERE id = (SELECT …) RETURNING` as one statement, which
//!   holds the database's single write lock from start to end: atomic by construction.
//!
//! Every function takes `now` (milliseconds since the epoch) so that tests control time.

use std::time::Duration;

use crate::db::jobs::{Report, insert_report};
use crate::db::{Columns, Db, with_db, with_tx};

/// A job a worker has claimed.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job_id: i64,
    pub url: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// The lease token: every later write about this claim presents it.
    pub token: String,
    /// The previous attempt's error, if any.
    pub last_error: Option<String>,
}

/// A lease token for a claim made by `instance`: unique per claim, so a worker that lost its
/// lease cannot act on the job again even after it claims it anew.
pub fn lease_token(instance: &str) -> String {
    let mut random = [0u8; 8];
    // An all-zero suffix (if the OS generator failed) still leaves the instance name and the
    // clock; tokens only have to differ between claims.
    let _ = getrandom::fill(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{instance}:{}:{hex}", crate::db::now_ms())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const CLAIM_POSTGRES: &str =
    "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2,
        attempts = attempts + 1, bytes_done = 0, updated_at = $3
    WHERE id = (
        SELECT id FROM jobs
        WHERE kind = 'url' AND ((state = 'queued' AND run_after <= $3)
                                OR (state = 'running' AND lease_until <= $3))
        ORDER BY run_after, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING id, url, attempts, error";

const CLAIM_SQLITE: &str = "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2,
        attempts = attempts + 1, bytes_done = 0, updated_at = $3
    WHERE id = (
        SELECT id FROM jobs
        WHERE kind = 'url' AND ((state = 'queued' AND run_after <= $3)
                                OR (state = 'running' AND lease_until <= $3))
        ORDER BY run_after, id
        LIMIT 1)
    RETURNING id, url, attempts, error";

/// Claims the oldest job that is due (queued, or running with an ended lease) for `lease`,
/// under a fresh token of `instance`. `None` when there is nothing to do.
pub async fn claim(
    db: &Db,
    instance: &str,
    lease: Duration,
    now: i64,
) -> Result<Option<Claim>, sqlx::Error> {
    let token = lease_token(instance);
    let sql = if db.is_postgres() {
        CLAIM_POSTGRES
    } else {
        CLAIM_SQLITE
    };
    with_db!(db, |p| {
        let Some(row) = sqlx::query(sql)
            .bind(&token)
            .bind(now.saturating_add(millis(lease)))
            .bind(now)
            .fetch_optional(p)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Claim {
            job_id: row.int("id")?,
            url: row.opt_text("url")?.unwrap_or_default(),
            attempts: row.int("attempts")?,
            token: token.clone(),
            last_error: row.opt_text("error")?,
        }))
    })
}

/// Extends the lease to `now + lease` and records progress. `false` when the lease is no
/// longer this claim's (it ended and another worker took the job): stop working on it.
pub async fn heartbeat(
    db: &Db,
    claim: &Claim,
    lease: Duration,
    bytes_done: i64,
    bytes_total: Option<i64>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    with_db!(db, |p| {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1, bytes_done = $2, bytes_total = $3, updated_at = $4
             WHERE id = $5 AND lease_owner = $6 AND state = 'running'",
        )
        .bind(now.saturating_add(millis(lease)))
        .bind(bytes_done)
        .bind(bytes_total)
        .bind(now)
        .bind(claim.job_id)
        .bind(&claim.token)
        .execute(p)
        .await?
        .rows_affected();
        Ok(done == 1)
    })
}

/// Gives the job back at once (the worker is stopping): it is queued again, due now, and
/// this attempt does not count. `false` when the lease was no longer this claim's.
pub async fn release(db: &Db, claim: &Claim, now: i64) -> Result<bool, sqlx::Error> {
    with_db!(db, |p| {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL,
                 attempts = attempts - 1, bytes_done = 0, run_after = $1, updated_at = $1
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(now)
        .bind(claim.job_id)
        .bind(&claim.token)
        .execute(p)
        .await?
        .rows_affected();
        Ok(done == 1)
    })
}

/// Stores the report and marks the job done, in one transaction. `false` (and nothing
/// written) when the lease was no longer this claim's. A job has at most one report: the
/// insert does nothing when one exists.
pub async fn complete(
    db: &Db,
    claim: &Claim,
    report: &Report,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let done = with_tx!(&mut tx, |c| {
        sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL,
                 bytes_done = $1, bytes_total = $1, error = NULL, updated_at = $2, finished_at = $2
             WHERE id = $3 AND lease_owner = $4 AND state = 'running'",
        )
        .bind(report.size)
        .bind(now)
        .bind(claim.job_id)
        .bind(&claim.token)
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    if done != 1 {
        // Dropping the transaction rolls it back.
        return Ok(false);
    }
    insert_report(&mut tx, claim.job_id, report, now).await?;
    tx.commit().await?;
    Ok(true)
}

/// What happened to a job whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued again, due at this time.
    Retry { at: i64 },
    /// Marked failed for good.
    Failed,
    /// The lease was no longer this claim's: nothing was written.
    LostLease,
}

/// Records a failed attempt with a readable `reason`. The job is queued again after a
/// backoff (1 s, 2 s, 4 s, … at most a minute) while it has attempts left and the error is
/// `retryable`; otherwise it is marked failed.
pub async fn fail(
    db: &Db,
    claim: &Claim,
    reason: &str,
    retryable: bool,
    max_attempts: u32,
    now: i64,
) -> Result<Outcome, sqlx::Error> {
    let retry = retryable && claim.attempts < i64::from(max_attempts);
    let (sql, outcome) = if retry {
        let shift = u32::try_from(claim.attempts.clamp(1, 7) - 1).unwrap_or(0);
        let at = now + (1000i64 << shift).min(60_000);
        (
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL,
                 bytes_done = 0, error = $1, run_after = $2, updated_at = $3
             WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
            Outcome::Retry { at },
        )
    } else {
        (
            "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_until = NULL,
                 error = $1, run_after = $2, updated_at = $3, finished_at = $3
             WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
            Outcome::Failed,
        )
    };
    let at = match outcome {
        Outcome::Retry { at } => at,
        _ => now,
    };
    with_db!(db, |p| {
        let done = sqlx::query(sql)
            .bind(reason)
            .bind(at)
            .bind(now)
            .bind(claim.job_id)
            .bind(&claim.token)
            .execute(p)
            .await?
            .rows_affected();
        Ok(if done == 1 {
            outcome
        } else {
            Outcome::LostLease
        })
    })
}
