//! An SQLite file shared by several processes that may all start at once.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// Opens a pool on an SQLite file that other processes may be opening at the same moment.
///
/// The first connection to a fresh file in WAL mode switches it to WAL, which needs an exclusive
/// lock; when several processes start at once, SQLite refuses all but one of them with
/// `SQLITE_BUSY` at once (a lock upgrade its busy timeout does not cover). Those try again,
/// backing off from 2 to 100 ms, until `wait` has passed: by then the file is in WAL mode and
/// the switch is a plain read. Any other error is returned at once.
pub async fn connect_pool(
    pool: SqlitePoolOptions,
    connect: SqliteConnectOptions,
    wait: Duration,
) -> Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        match pool.clone().connect_with(connect.clone()).await {
            Err(e) if is_busy(&e) && tokio::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Whether `e` is SQLite's "database is locked" (`SQLITE_BUSY`, with any extended code).
fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    let sqlx::Error::Database(e) = e else {
        return false;
    };
    e.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}
