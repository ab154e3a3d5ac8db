//! The SQL backend, PostgreSQL and SQLite through one code path (the same statements; `$N`
//! parameters work in both). A row is `(id, version, expires_at, expiry_bucket, data)`;
//! `replace` is `UPDATE … WHERE id = $ AND version = $ AND expires_at > now`, so a row that was
//! deleted, expired or changed in between is left alone (and `delete_if` is `DELETE … WHERE
//! id = $ AND version = $`). Expired rows are never served (every
//! read checks `expires_at`) and a background task deletes them every cleanup interval.
//!
//! The cleanup finds expired rows through an index on `expiry_bucket`, the hour in which the
//! row expires, rather than on `expires_at`, which every save moves. A save that keeps the
//! session's expiry within the same hour then changes no indexed column, so PostgreSQL updates
//! the row in place (a HOT update: no index entries written, less WAL), and the table is made
//! with room on each page for it (`fillfactor = 90`). Tables made before the bucket existed get
//! the column (rows already there count as bucket 0, so the cleanup still checks them) and the
//! fill factor, and lose the old `expires_at` index, when a store first connects to them.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Executor, Row, SqlSafeStr, SqlStr};
use tokio::task::JoinHandle;

use super::{Loaded, StoreOptions};
use crate::error::StoreError;
use crate::record::{Record, millis, now_ms};

pub(crate) struct SqlStore {
    pool: Pool,
    sql: Statements,
    cleanup: JoinHandle<()>,
}

#[derive(Clone)]
enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$p` bound to whichever pool this is: the statement text is shared, only
/// the driver differs.
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Pg($p) => $body,
            Pool::Sqlite($p) => $body,
        }
    };
}

/// The statements for one table. The table name is interpolated, which is safe because
/// `StoreOptions` only accepts `[A-Za-z0-9_]` names; everything else is a bind parameter.
struct Statements {
    create_table: SqlStr,
    /// Counts the `expiry_bucket` column (0 in a table made before it existed); bind the table.
    has_bucket: SqlStr,
    add_bucket: SqlStr,
    /// PostgreSQL only: the cleanup's index. On SQLite (development, small tables) keeping an
    /// index current would cost every save more than the minute-ly cleanup's table scan.
    pg: Option<Box<PgSchema>>,
    load: SqlStr,
    insert: SqlStr,
    replace: SqlStr,
    delete: SqlStr,
    delete_if: SqlStr,
    purge: SqlStr,
}

/// What PostgreSQL's table has besides its columns. Each step is looked up in the catalog
/// first, so that a store connecting to a table that is up to date takes no lock on it.
struct PgSchema {
    /// The cleanup's index, named so that it fits PostgreSQL's 63 bytes whatever the table.
    index_name: String,
    has_index: SqlStr,
    create_index: SqlStr,
    /// Indexes on `expires_at`, made by earlier versions: every save would have to update them.
    old_indexes: SqlStr,
    /// Room on each page for updates in place, for a table made before it was asked for.
    fillfactor: SqlStr,
}

impl PgSchema {
    fn new(table: &str) -> PgSchema {
        let index_name = index_name(table);
        PgSchema {
            has_index: statement(
                "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() \
                 AND indexname = $1"
                    .to_owned(),
            ),
            create_index: statement(format!(
                "CREATE INDEX IF NOT EXISTS {index_name} ON {table} (expiry_bucket)"
            )),
            old_indexes: statement(
                "SELECT indexname::TEXT FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = lower($1) AND indexdef LIKE '%(expires_at)'"
                    .to_owned(),
            ),
            fillfactor: statement(format!("ALTER TABLE {table} SET (fillfactor = 90)")),
            index_name,
        }
    }
}

/// `TABLE_expiry_bucket`, or for a long table name its first 40 characters and a hash of the
/// rest: PostgreSQL cuts longer names short, which could make the index's name the table's.
fn index_name(table: &str) -> String {
    let table = table.to_ascii_lowercase();
    if table.len() + "_expiry_bucket".len() <= 63 {
        return format!("{table}_expiry_bucket");
    }
    let hash = table.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}_{hash:08x}_expiry", &table[..40])
}

fn statement(sql: String) -> SqlStr {
    AssertSqlSafe(std::sync::Arc::<str>::from(sql)).into_sql_str()
}

impl Statements {
    fn new(table: &str, postgres: bool) -> Statements {
        Statements {
            create_table: statement(format!(
                // The bucket's default lets a process of an earlier version, still running
                // during a rolling deploy, go on creating sessions.
                "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, version BIGINT NOT NULL, \
                 expires_at BIGINT NOT NULL, expiry_bucket BIGINT NOT NULL DEFAULT 0, \
                 data TEXT NOT NULL){}",
                if postgres {
                    " WITH (fillfactor = 90)"
                } else {
                    ""
                }
            )),
            has_bucket: statement(
                if postgres {
                    "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = \
                     current_schema() AND table_name = lower($1) AND column_name = 'expiry_bucket'"
                } else {
                    "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = 'expiry_bucket'"
                }
                .to_owned(),
            ),
            add_bucket: statement(format!(
                "ALTER TABLE {table} ADD COLUMN expiry_bucket BIGINT NOT NULL DEFAULT 0"
            )),
            pg: postgres.then(|| Box::new(PgSchema::new(table))),
            load: statement(format!(
                "SELECT version, data FROM {table} WHERE id = $1 AND expires_at > $2"
            )),
            insert: statement(format!(
                "INSERT INTO {table} (id, version, expires_at, expiry_bucket, data) \
                 VALUES ($1, 1, $2, $3, $4) ON CONFLICT (id) DO NOTHING"
            )),
            replace: statement(format!(
                "UPDATE {table} SET version = $1, expires_at = $2, expiry_bucket = $3, data = $4 \
                 WHERE id = $5 AND version = $6 AND expires_at > $7"
            )),
            delete: statement(format!("DELETE FROM {table} WHERE id = $1")),
            delete_if: statement(format!(
                "DELETE FROM {table} WHERE id = $1 AND version = $2"
            )),
            purge: statement(format!(
                "DELETE FROM {table} WHERE expiry_bucket <= $1 AND expires_at <= $2"
            )),
        }
    }
}

pub(crate) enum ConnectFailure {
    Invalid,
    Store(StoreError),
}

impl From<sqlx::Error> for ConnectFailure {
    fn from(e: sqlx::Error) -> Self {
        ConnectFailure::Store(e.into())
    }
}

impl SqlStore {
    pub(crate) async fn connect(
        url: &str,
        options: &StoreOptions,
    ) -> Result<SqlStore, ConnectFailure> {
        let pool = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|_| ConnectFailure::Invalid)?
                .create_if_missing(true)
                // WAL lets readers run beside the one writer; the busy timeout makes a writer
                // wait for another process's write instead of failing at once. `NORMAL` is
                // SQLite's recommended durability for WAL: a process crash loses nothing, a
                // power loss at most the last commits — acceptable for sessions, and it spares
                // every save an fsync.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(options.timeout);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .acquire_timeout(options.timeout);
            Pool::Sqlite(crate::sqlite::connect_pool(pool, connect, options.timeout).await?)
        } else {
            let connect = PgConnectOptions::from_str(url).map_err(|_| ConnectFailure::Invalid)?;
            Pool::Pg(
                // No ping before every query (a round trip each): a connection that broke
                // fails its query, is discarded, and the next request gets a fresh one.
                PgPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(false)
                    .acquire_timeout(options.timeout)
                    .connect_with(connect)
                    .await?,
            )
        };
        let sql = Statements::new(&options.namespace, matches!(pool, Pool::Pg(_)));
        create_schema(&pool, &sql, &options.namespace)
            .await
            .map_err(ConnectFailure::Store)?;
        let cleanup = tokio::spawn(purge_expired(
            pool.clone(),
            sql.purge.clone(),
            options.cleanup_interval,
        ));
        Ok(SqlStore { pool, sql, cleanup })
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let now = to_i64(now_ms());
        let row = with_pool!(&self.pool, |p| {
            sqlx::query(self.sql.load.clone())
                .bind(id)
                .bind(now)
                .fetch_optional(p)
                .await?
                .map(|row| {
                    Ok::<_, sqlx::Error>((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?))
                })
                .transpose()?
        });
        let Some((version, data)) = row else {
            return Ok(None);
        };
        let record = Record::from_json(data.as_bytes()).map_err(StoreError::Corrupt)?;
        Ok(Some(Loaded {
            version: u64::try_from(version).unwrap_or(0),
            record,
        }))
    }

    pub(crate) async fn create(
        &self,
        id: &str,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let expires = now_ms().saturating_add(millis(ttl));
        let data = record.to_json();
        let done = with_pool!(&self.pool, |p| {
            sqlx::query(self.sql.insert.clone())
                .bind(id)
                .bind(to_i64(expires))
                .bind(bucket(expires))
                .bind(&data)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    pub(crate) async fn replace(
        &self,
        id: &str,
        version: u64,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let expires = now.saturating_add(millis(ttl));
        let data = record.to_json();
        let (old, new) = (to_i64(version), to_i64(version + 1));
        let done = with_pool!(&self.pool, |p| {
            sqlx::query(self.sql.replace.clone())
                .bind(new)
                .bind(to_i64(expires))
                .bind(bucket(expires))
                .bind(&data)
                .bind(id)
                .bind(old)
                .bind(to_i64(now))
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p| sqlx::query(self.sql.delete.clone())
            .bind(id)
            .execute(p)
            .await
            .map(|_| ())?);
        Ok(())
    }

    pub(crate) async fn delete_if(&self, id: &str, version: u64) -> Result<bool, StoreError> {
        let done = with_pool!(&self.pool, |p| sqlx::query(self.sql.delete_if.clone())
            .bind(id)
            .bind(to_i64(version))
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        self.cleanup.abort();
    }
}

async fn create_schema(pool: &Pool, sql: &Statements, table: &str) -> Result<(), StoreError> {
    // Several processes may start at once; PostgreSQL's `IF NOT EXISTS` can still fail on a
    // concurrent creation (and two may add the missing column at once), so a retry after a
    // short pause settles it.
    let mut attempt = 0;
    loop {
        let result: Result<(), sqlx::Error> = with_pool!(pool, |p| async {
            p.execute(sql.create_table.clone()).await?;
            // Checked first: altering a table on every start would lock it every time.
            let has_bucket: i64 = sqlx::query_scalar(sql.has_bucket.clone())
                .bind(table)
                .fetch_one(p)
                .await?;
            if has_bucket == 0 {
                p.execute(sql.add_bucket.clone()).await?;
                if let Some(pg) = &sql.pg {
                    p.execute(pg.fillfactor.clone()).await?;
                }
            }
            if let Some(pg) = &sql.pg {
                let old: Vec<String> = sqlx::query_scalar(pg.old_indexes.clone())
                    .bind(table)
                    .fetch_all(p)
                    .await?;
                for name in old {
                    let name = name.replace('"', "\"\"");
                    p.execute(statement(format!("DROP INDEX IF EXISTS \"{name}\"")))
                        .await?;
                }
                let has_index: i64 = sqlx::query_scalar(pg.has_index.clone())
                    .bind(&pg.index_name)
                    .fetch_one(p)
                    .await?;
                if has_index == 0 {
                    p.execute(pg.create_index.clone()).await?;
                }
            }
            Ok(())
        }
        .await);
        match result {
            Ok(()) => return Ok(()),
            Err(_) if attempt < 2 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn purge_expired(pool: Pool, purge: SqlStr, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        let result = with_pool!(&pool, |p| sqlx::query(purge.clone())
            .bind(bucket(now))
            .bind(to_i64(now))
            .execute(p)
            .await
            .map(|_| ()));
        if let Err(e) = result {
            crate::error::log_error("deleting expired sessions failed", &e);
        }
    }
}

/// The expiry bucket of a row that expires at `expires_ms`: its hour since the epoch. A row has
/// expired at `now` only if its bucket is at most `bucket(now)`.
fn bucket(expires_ms: u64) -> i64 {
    to_i64(expires_ms / 3_600_000)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
