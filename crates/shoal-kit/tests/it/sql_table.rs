//! The SQL stores' table: saves update PostgreSQL rows in place, and a table made before the
//! expiry bucket existed is brought up to date without losing a session.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_kit::SessionConfig;
use sqlx::{AssertSqlSafe, Connection};

use crate::support::{Kind, eventually, send, target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_table_from_before_expiry_buckets_is_brought_up_to_date() {
    a_table_from_before_expiry_buckets_is_brought_up_to_date(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_table_from_before_expiry_buckets_is_brought_up_to_date() {
    a_table_from_before_expiry_buckets_is_brought_up_to_date(Kind::Sqlite).await;
}

/// Direct access to the store's database, to set up and inspect its table.
enum Db {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    async fn open(url: &str) -> Db {
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .unwrap()
                .create_if_missing(true);
            Db::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap())
        } else {
            Db::Pg(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn execute(&self, sql: String) {
        match self {
            Db::Pg(p) => sqlx::query(AssertSqlSafe(sql)).execute(p).await.map(drop),
            Db::Sqlite(p) => sqlx::query(AssertSqlSafe(sql)).execute(p).await.map(drop),
        }
        .unwrap();
    }

    async fn count(&self, sql: String) -> i64 {
        match self {
            Db::Pg(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await,
            Db::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await,
        }
        .unwrap()
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

async fn a_table_from_before_expiry_buckets_is_brought_up_to_date(kind: Kind) {
    let Some(t) = target(kind, "oldtable") else {
        return;
    };
    let table = &t.namespace;
    let db = Db::open(&t.url).await;
    // The table as stores before the expiry bucket made it, with one live and one expired
    // session in it.
    db.execute(format!(
        "CREATE TABLE {table} (id TEXT PRIMARY KEY, version BIGINT NOT NULL, \
         expires_at BIGINT NOT NULL, data TEXT NOT NULL)"
    ))
    .await;
    if kind == Kind::Postgres {
        db.execute(format!(
            "CREATE INDEX {table}_expires_at ON {table} (expires_at)"
        ))
        .await;
    }
    let (live, expired, now) = ("l".repeat(43), "x".repeat(43), now_ms());
    let record = format!(r#"{{"c":{now},"t":{now},"d":{{"a":"1"}}}}"#);
    db.execute(format!(
        "INSERT INTO {table} (id, version, expires_at, data) VALUES \
         ('{live}', 1, {}, '{record}'), ('{expired}', 1, {}, '{record}')",
        now + 3_600_000,
        now - 1_000
    ))
    .await;

    let store = t.store().await;
    let columns = match kind {
        Kind::Postgres => format!(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = lower('{table}') \
             AND column_name = 'expiry_bucket'"
        ),
        _ => format!(
            "SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = 'expiry_bucket'"
        ),
    };
    assert_eq!(db.count(columns).await, 1, "the column was added");
    if kind == Kind::Postgres {
        let indexes = |name: String| {
            format!("SELECT COUNT(*) FROM pg_indexes WHERE indexname = lower('{name}')")
        };
        assert_eq!(db.count(indexes(format!("{table}_expires_at"))).await, 0);
        assert_eq!(db.count(indexes(format!("{table}_expiry_bucket"))).await, 1);
        let fill = format!(
            "SELECT COUNT(*) FROM pg_class WHERE relname = lower('{table}') \
             AND reloptions::TEXT LIKE '%fillfactor=90%'"
        );
        assert_eq!(db.count(fill).await, 1, "room left on each page");
    }

    let app = crate::support::app(store.clone(), SessionConfig::default());
    assert_eq!(send(&app, "GET", "/get/a", Some(&live)).await.body, "1");
    send(&app, "POST", "/set/a/2", Some(&live)).await;
    assert_eq!(send(&app, "GET", "/get/a", Some(&live)).await.body, "2");
    // The cleanup (every 500 ms in these tests) deletes the expired row of the old table.
    let gone = format!("SELECT COUNT(*) FROM {table} WHERE id = '{expired}'");
    assert!(
        eventually(Duration::from_secs(30), || async {
            db.count(gone.clone()).await == 0
        })
        .await,
        "the expired session of the old table was never deleted"
    );
    assert_eq!(
        db.count(format!("SELECT COUNT(*) FROM {table} WHERE id = '{live}'"))
            .await,
        1
    );

    // A second store on the migrated table changes nothing and works the same.
    let again = t.store().await;
    let app = crate::support::app(again, SessionConfig::default());
    assert_eq!(send(&app, "GET", "/get/a", Some(&live)).await.body, "2");
}

/// Every save moves a session's expiry; with the cleanup's index on the expiry's hour instead,
/// PostgreSQL updates the row in place (HOT) and writes no index entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_update_postgres_rows_in_place() {
    let Some(t) = target(Kind::Postgres, "inplace") else {
        return;
    };
    let store = t.store().await;
    let app = crate::support::app(store, SessionConfig::default());
    let id = send(&app, "POST", "/set/n/0", None)
        .await
        .issued()
        .expect("a session");
    const SAVES: i64 = 20;
    for n in 1..=SAVES {
        let reply = send(&app, "POST", &format!("/set/n/{n}"), Some(&id)).await;
        assert_eq!(reply.status, 200);
    }
    // Statistics reach the view within seconds of the writers going idle.
    let mut conn = sqlx::PgConnection::connect(&t.url).await.unwrap();
    let table = t.namespace.to_lowercase();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (updates, in_place) = loop {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await
            .unwrap();
        let counts: Option<(i64, i64)> = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1",
        )
        .bind(&table)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        match counts {
            Some((updates, in_place)) if updates >= SAVES => break (updates, in_place),
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the statistics never showed {SAVES} updates: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // An hour boundary passed during the test makes one save move the row to a new bucket.
    assert!(
        in_place >= updates - 1,
        "{in_place} of {updates} saves updated the row in place"
    );
}

/// A namespace of the longest length allowed (63): PostgreSQL cuts names longer than that, so
/// an index named after the table could end up named as the table itself, and be skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_index_exists_for_the_longest_namespace() {
    // `kit_{test}_{12 hex digits}`: 63 characters.
    let Some(t) = target(Kind::Postgres, &"n".repeat(46)) else {
        return;
    };
    assert_eq!(t.namespace.len(), 63);
    let db = Db::open(&t.url).await;
    let indexes = format!(
        "SELECT COUNT(*) FROM pg_indexes WHERE tablename = lower('{}') \
         AND indexdef LIKE '%(expiry_bucket)'",
        t.namespace
    );
    let store = t.store().await;
    assert_eq!(db.count(indexes.clone()).await, 1);
    // A second process connecting finds it and makes no other.
    let _again = t.store().await;
    assert_eq!(db.count(indexes).await, 1);
    let app = crate::support::app(store, SessionConfig::default());
    let id = send(&app, "POST", "/set/a/1", None)
        .await
        .issued()
        .expect("a session");
    assert_eq!(send(&app, "GET", "/get/a", Some(&id)).await.body, "1");
}
