//! The database: users, jobs and reports in PostgreSQL or SQLite, through one code path.
//!
//! Statements are plain runtime queries with `$N` parameters, which both drivers accept; the
//! few places where the dialects differ (identity columns, `FOR UPDATE SKIP LOCKED`) pick their
//! text by [`Db::is_postgres`]. Times are integers (milliseconds since the Unix epoch, from the
//! app's clock), so both databases store and compare them the same way.
//!
//! - `schema`: the tables and `digest migrate` (safe when several processes start at once).
//! - `users`, `jobs`: what the web process reads and writes.
//! - the queue (claiming, leases, retries) is in [`crate::queue`].

pub mod jobs;
pub mod schema;
pub mod users;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Postgres, Row, Sqlite, Transaction};

use crate::config::DatabaseUrl;

/// A pool of connections to the app's database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: Pool,
}

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A write transaction (on SQLite it holds the write lock from its start).
pub(crate) enum Tx {
    Pg(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Runs `$body` with `$p` bound to whichever pool `$db` has: the statement text is shared,
/// only the driver differs.
macro_rules! with_db {
    ($db:expr, |$p:ident| $body:expr) => {
        match &$db.pool {
            $crate::db::Pool::Pg($p) => $body,
            $crate::db::Pool::Sqlite($p) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the transaction's connection.
macro_rules! with_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::db::Tx::Pg(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::db::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

pub(crate) use {with_db, with_tx};

/// Connecting to the database failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The directory of the SQLite file could not be created.
    #[error("cannot create the database directory `{path}`")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The driver did not accept the URL.
    #[error("`DATABASE_URL` `{url}` is not valid")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database did not answer or refused us.
    #[error("cannot reach the database at `{url}`")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
}

/// How long a statement waits for a connection, or for SQLite's write lock.
const WAIT: Duration = Duration::from_secs(10);

impl Db {
    /// Connects to `url` (creating an SQLite file and its directory when missing) and checks
    /// that the database answers.
    pub async fn connect(url: &DatabaseUrl) -> Result<Db, ConnectError> {
        let masked = url.masked();
        let unreachable = |source| ConnectError::Unreachable {
            url: masked.clone(),
            source,
        };
        let invalid = |source| ConnectError::InvalidUrl {
            url: masked.clone(),
            source,
        };
        let pool = match url {
            DatabaseUrl::Postgres(url) => {
                let options: PgConnectOptions = url.parse().map_err(invalid)?;
                Pool::Pg(
                    PgPoolOptions::new()
                        .max_connections(8)
                        .acquire_timeout(WAIT)
                        .connect_with(options)
                        .await
                        .map_err(unreachable)?,
                )
            }
            DatabaseUrl::Sqlite { path, url } => {
                if let Some(dir) = path.parent() {
                    create_private_dir(dir).map_err(|source| ConnectError::CreateDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                let options: SqliteConnectOptions = url.parse().map_err(invalid)?;
                let options = options
                    .create_if_missing(true)
                    // WAL: readers never wait for the writer; the busy timeout makes a writer
                    // wait for another process's write instead of failing at once.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(WAIT)
                    .foreign_keys(true);
                // Several processes of the formation may open a fresh file at once.
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(WAIT);
                Pool::Sqlite(
                    shoal_kit::sqlite::connect_pool(pool, options, WAIT)
                        .await
                        .map_err(unreachable)?,
                )
            }
        };
        let db = Db { pool };
        db.ping().await.map_err(unreachable)?;
        Ok(db)
    }

    /// Whether this is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Pg(_))
    }

    /// One round trip: the health check.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so it never fails half-way because another process wrote in between.
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match &self.pool {
            Pool::Pg(p) => Tx::Pg(p.begin().await?),
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        with_db!(self, |p| p.close().await);
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Pg(t) => t.commit().await,
            Tx::Sqlite(t) => t.commit().await,
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reading columns by name, the same way from either driver's rows.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(column)
            }
        }
    };
}

columns_for!(PgRow);
columns_for!(SqliteRow);
