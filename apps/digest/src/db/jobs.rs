//! Jobs and their reports, as the web process sees them: a user's list, one job with its
//! report, a new URL job for the queue, and a finished upload (job and report in one
//! transaction). The worker's side of the queue is in [`crate::queue`].

use serde::Serialize;

use super::{Columns, Db, Tx, with_db, with_tx};

/// A job as shown to its owner.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    /// `url` or `upload`.
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    pub url: Option<String>,
    /// The uploaded file's name as the browser sent it: display text only, never a path.
    pub file_name: Option<String>,
    pub bytes_done: i64,
    /// `None` while the size is not known (a download without `Content-Length`).
    pub bytes_total: Option<i64>,
    pub attempts: i64,
    /// Why the job failed, or why its last attempt failed while it waits for a retry.
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A job's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub size: i64,
    pub sha256: String,
    pub blake3: String,
    /// The detected media type (from magic bytes), e.g. `image/png`.
    pub mime: String,
    /// The detected type in words, e.g. `PNG image`.
    pub description: String,
    /// For text: the number of lines.
    pub text_lines: Option<i64>,
    /// For text: the encoding, e.g. `UTF-8`.
    pub text_encoding: Option<String>,
    /// Everything the inspector reported, as JSON text.
    #[serde(skip)]
    pub details: String,
}

const JOB_COLUMNS: &str = "id, kind, state, url, file_name, bytes_done, bytes_total, attempts, \
                           error, created_at, updated_at, finished_at";

pub(crate) fn job_from_row(r: &impl Columns) -> Result<Job, sqlx::Error> {
    Ok(Job {
        id: r.int("id")?,
        kind: r.text("kind")?,
        state: r.text("state")?,
        url: r.opt_text("url")?,
        file_name: r.opt_text("file_name")?,
        bytes_done: r.int("bytes_done")?,
        bytes_total: r.opt_int("bytes_total")?,
        attempts: r.int("attempts")?,
        error: r.opt_text("error")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        finished_at: r.opt_int("finished_at")?,
    })
}

fn report_from_row(r: &impl Columns) -> Result<Report, sqlx::Error> {
    Ok(Report {
        size: r.int("size")?,
        sha256: r.text("sha256")?,
        blake3: r.text("blake3")?,
        mime: r.text("mime")?,
        description: r.text("description")?,
        text_lines: r.opt_int("text_lines")?,
        text_encoding: r.opt_text("text_encoding")?,
        details: r.text("details")?,
    })
}

/// Queues a download of `url` for `user`.
pub async fn create_url_job(db: &Db, user: i64, url: &str, now: i64) -> Result<Job, sqlx::Error> {
    let sql = format!(
        "INSERT INTO jobs (user_id, kind, state, url, run_after, created_at, updated_at)
         VALUES ($1, 'url', 'queued', $2, $3, $3, $3) RETURNING {JOB_COLUMNS}"
    );
    with_db!(db, |p| {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .bind(url)
            .bind(now)
            .fetch_one(p)
            .await?;
        job_from_row(&row)
    })
}

/// Stores a finished upload: a `done` job and its report, in one transaction.
pub async fn create_upload(
    db: &Db,
    user: i64,
    file_name: &str,
    report: &Report,
    now: i64,
) -> Result<Job, sqlx::Error> {
    let sql = format!(
        "INSERT INTO jobs (user_id, kind, state, file_name, bytes_done, bytes_total, attempts,
                           run_after, created_at, updated_at, finished_at)
         VALUES ($1, 'upload', 'done', $2, $3, $3, 1, $4, $4, $4, $4) RETURNING {JOB_COLUMNS}"
    );
    let mut tx = db.begin_write().await?;
    let job = with_tx!(&mut tx, |c| {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .bind(file_name)
            .bind(report.size)
            .bind(now)
            .fetch_one(&mut *c)
            .await?;
        job_from_row(&row)
    })?;
    insert_report(&mut tx, job.id, report, now).await?;
    tx.commit().await?;
    Ok(job)
}

/// Inserts the report of `job` unless it has one (a job that ran twice keeps its first).
pub(crate) async fn insert_report(
    tx: &mut Tx,
    job: i64,
    report: &Report,
    now: i64,
) -> Result<(), sqlx::Error> {
    with_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO reports (job_id, size, sha256, blake3, mime, description, text_lines,
                                  text_encoding, details, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(job)
        .bind(report.size)
        .bind(&report.sha256)
        .bind(&report.blake3)
        .bind(&report.mime)
        .bind(&report.description)
        .bind(report.text_lines)
        .bind(&report.text_encoding)
        .bind(&report.details)
        .bind(now)
        .execute(&mut *c)
        .await
        .map(|_| ())
    })
}

/// The newest `limit` jobs of `user`, newest first.
pub async fn list(db: &Db, user: i64, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    let sql =
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 ORDER BY id DESC LIMIT $2");
    with_db!(db, |p| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .bind(limit)
            .fetch_all(p)
            .await?
            .iter()
            .map(job_from_row)
            .collect()
    })
}

/// Job `id` of `user` (`None` when it does not exist or belongs to someone else), with its
/// report once it has one.
pub async fn get(
    db: &Db,
    user: i64,
    id: i64,
) -> Result<Option<(Job, Option<Report>)>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND user_id = $2");
    with_db!(db, |p| {
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(user)
            .fetch_optional(p)
            .await?
        else {
            return Ok(None);
        };
        let job = job_from_row(&row)?;
        let report = sqlx::query(
            "SELECT size, sha256, blake3, mime, description, text_lines, text_encoding, details
             FROM reports WHERE job_id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await?
        .map(|r| report_from_row(&r))
        .transpose()?;
        Ok(Some((job, report)))
    })
}

/// How many reports job `id` has (tests prove it is never more than one).
pub async fn report_count(db: &Db, id: i64) -> Result<i64, sqlx::Error> {
    with_db!(db, |p| {
        sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE job_id = $1")
            .bind(id)
            .fetch_one(p)
            .await
    })
}
