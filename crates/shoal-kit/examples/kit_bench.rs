//! Session round-trip cost per request through the layer, side by side with a raw client of
//! the same store doing the same GET + SET of a same-sized value, interleaved request by request
//! (a raw request, a layer request, and so on, the order swapped every other request), so that
//! both sides meet the same machine: the round-trip time of a loopback connection here moves
//! by half within seconds, with the CPUs' idle states and where the scheduler puts the store.
//! Run it with `bench/kit.sh` (release build); stores whose URL variable is unset are skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use redis::AsyncCommands;
use shoal_kit::{Session, SessionConfig, SessionLayer, SessionStore, StoreOptions};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr, SqlStr};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tower::{Layer, ServiceExt};

const ROUNDS: usize = 25;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ops = env_usize("BENCH_OPS", 500);
    let rounds = env_usize("BENCH_ROUNDS", ROUNDS);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let stores = [
        ("redis", std::env::var("SHOAL_TEST_REDIS_URL").ok()),
        ("memcached", std::env::var("SHOAL_TEST_MEMCACHED_URL").ok()),
        ("postgres", std::env::var("SHOAL_TEST_DATABASE_URL").ok()),
        ("sqlite", Some(sqlite)),
    ];
    println!(
        "session round trip per request (load + change one key + save), {ops} sequential requests per side x {rounds} rounds, interleaved request by request; median of the rounds' means\n"
    );
    println!("| store | raw client GET+SET | through SessionLayer | layer / raw | target |");
    println!("|---|---|---|---|---|");
    let only = std::env::var("BENCH_STORES").unwrap_or_default();
    for (name, url) in stores {
        if !only.is_empty() && !only.split(',').any(|s| s == name) {
            continue;
        }
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            println!("| {name} | not run: URL variable unset | | | |");
            continue;
        };
        let pin = std::env::var("BENCH_PIN_CORE").ok();
        let url = match (name, &pin) {
            // Names this benchmark's connections, so their server processes can be pinned.
            ("postgres", Some(_)) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}application_name={PG_APP}")
            }
            _ => url,
        };
        let namespace = format!("kit_bench_{}", std::process::id());
        let store = SessionStore::connect(&url, StoreOptions::default().with_namespace(&namespace))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Raw::connect(name, &url, &namespace).await;
        let layered = Layered::new(store).await;
        // Warm both paths up (connections, prepared statements, script cache).
        raw.run(ops / 10).await;
        layered.run(ops / 10).await;
        if let (Raw::Pg(pool, _), Some(core)) = (&raw, &pin) {
            pin_pg_backends(pool, core).await;
        }
        let (mut raw_t, mut layer_t) = (Vec::new(), Vec::new());
        // For profiling one side alone: BENCH_ONLY=raw or BENCH_ONLY=layer.
        match std::env::var("BENCH_ONLY").as_deref() {
            Ok("raw") => {
                let t = raw.run(ops * rounds).await;
                println!("| {name} | {} | | | |", micros(t));
                continue;
            }
            Ok("layer") => {
                let t = layered.run(ops * rounds).await;
                println!("| {name} | | {} | | |", micros(t));
                continue;
            }
            _ => {}
        }
        for _ in 0..rounds {
            let (mut r, mut l) = (Duration::ZERO, Duration::ZERO);
            for i in 0..ops {
                if i % 2 == 0 {
                    r += raw.run(1).await;
                    l += layered.run(1).await;
                } else {
                    l += layered.run(1).await;
                    r += raw.run(1).await;
                }
            }
            let ops = u32::try_from(ops.max(1)).unwrap();
            raw_t.push(r / ops);
            layer_t.push(l / ops);
        }
        let (r, l) = (median(raw_t), median(layer_t));
        println!(
            "| {name} | {} | {} | {:.2}x | ≤ 1.2x |",
            micros(r),
            micros(l),
            l.as_secs_f64() / r.as_secs_f64()
        );
        raw.cleanup().await;
    }
}

const PG_APP: &str = "shoal_kit_bench";

/// Puts the PostgreSQL server processes of this benchmark's connections on `core`, with the
/// benchmark; says so when it cannot (another user's processes need privileges).
async fn pin_pg_backends(pool: &sqlx::PgPool, core: &str) {
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(PG_APP)
            .fetch_all(pool)
            .await
            .unwrap();
    for pid in &pids {
        let pinned = std::process::Command::new("taskset")
            .args(["-p", "-c", core, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !pinned {
            eprintln!("kit_bench: could not pin PostgreSQL process {pid} to core {core}");
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The app side: a session layer around a handler that reads a counter and writes it back
/// incremented, called in-process (no HTTP, so only the session work is measured).
struct Layered {
    cookie: String,
    service: shoal_kit::SessionService<tower::util::ServiceFn<Handler>>,
}

type Bump = std::future::Ready<Result<Response<Body>, std::convert::Infallible>>;
type Handler = fn(Request<Body>) -> Bump;

fn bump(req: Request<Body>) -> Bump {
    let session = req.extensions().get::<Session>().expect("layer installed");
    let n: u64 = session.get("n").unwrap().unwrap_or(0);
    session.insert("n", n + 1).unwrap();
    session.insert("user", "someone@example.com").unwrap();
    std::future::ready(Ok(Response::new(Body::empty())))
}

impl Layered {
    async fn new(store: SessionStore) -> Layered {
        let layer = SessionLayer::new(store, SessionConfig::default());
        let service = layer.layer(tower::service_fn(bump as Handler));
        let res = service
            .clone()
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        let set_cookie = res.headers()["set-cookie"].to_str().unwrap();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        Layered { cookie, service }
    }

    async fn run(&self, ops: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..ops {
            let req = Request::builder()
                .header("cookie", &self.cookie)
                .body(Body::empty())
                .unwrap();
            let res = self.service.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
        }
        start.elapsed() / u32::try_from(ops).unwrap()
    }
}

/// The baseline: the same store's plain client reading a value and writing it back.
enum Raw {
    Redis(redis::aio::MultiplexedConnection, String),
    Memcached(BufReader<TcpStream>, String),
    Pg(sqlx::PgPool, Sql),
    Sqlite(sqlx::SqlitePool, Sql),
}

/// The raw statements, prepared once as the layer's are.
struct Sql {
    table: String,
    select: SqlStr,
    update: SqlStr,
}

fn sql(s: String) -> SqlStr {
    AssertSqlSafe(s).into_sql_str()
}

const VALUE: &str =
    r#"{"c":1764380000000,"t":1764380000000,"d":{"n":10000,"user":"someone@example.com"}}"#;

/// The value the raw client writes back: like the layer, every write changes it (a store may
/// skip writing an unchanged value, which would flatter the baseline).
fn next_value() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        r#"{{"c":1764380000000,"t":1764380000000,"d":{{"n":{},"user":"someone@example.com"}}}}"#,
        10000 + n % 90000
    )
}

impl Raw {
    async fn connect(name: &str, url: &str, namespace: &str) -> Raw {
        let key = format!("{namespace}_raw");
        match name {
            "redis" => {
                let mut c = redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let _: () = c.set(&key, VALUE).await.unwrap();
                Raw::Redis(c, key)
            }
            "memcached" => {
                let addr = url.split_once("://").unwrap().1.trim_end_matches('/');
                let mut c =
                    Raw::Memcached(BufReader::new(TcpStream::connect(addr).await.unwrap()), key);
                c.run(1).await;
                c
            }
            "postgres" | "sqlite" => {
                let table = format!("{namespace}_raw");
                let create = sql(format!(
                    "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, data TEXT NOT NULL)"
                ));
                let insert = sql(format!("INSERT INTO {table} (id, data) VALUES ('k', $1)"));
                let stmts = Sql {
                    select: sql(format!("SELECT data FROM {table} WHERE id = $1")),
                    update: sql(format!("UPDATE {table} SET data = $1 WHERE id = $2")),
                    table,
                };
                if name == "postgres" {
                    // The same pool settings as the kit's store: no ping before every query.
                    let p = sqlx::postgres::PgPoolOptions::new()
                        .test_before_acquire(false)
                        .connect(url)
                        .await
                        .unwrap();
                    sqlx::query(create.clone()).execute(&p).await.unwrap();
                    sqlx::query(insert.clone())
                        .bind(VALUE)
                        .execute(&p)
                        .await
                        .unwrap();
                    Raw::Pg(p, stmts)
                } else {
                    // The same connection settings as the kit's SQLite store.
                    let options = url
                        .parse::<sqlx::sqlite::SqliteConnectOptions>()
                        .unwrap()
                        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(5));
                    let p = sqlx::sqlite::SqlitePoolOptions::new()
                        .test_before_acquire(false)
                        .connect_with(options)
                        .await
                        .unwrap();
                    sqlx::query(create.clone()).execute(&p).await.unwrap();
                    sqlx::query(insert.clone())
                        .bind(VALUE)
                        .execute(&p)
                        .await
                        .unwrap();
                    Raw::Sqlite(p, stmts)
                }
            }
            _ => unreachable!(),
        }
    }

    async fn run(&mut self, ops: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..ops {
            match self {
                Raw::Redis(c, key) => {
                    let v: String = c.get(&*key).await.unwrap();
                    assert!(!v.is_empty());
                    let _: () = c.pset_ex(&*key, next_value(), 1_800_000).await.unwrap();
                }
                Raw::Memcached(c, key) => {
                    c.get_mut()
                        .write_all(format!("mg {key} v\r\n").as_bytes())
                        .await
                        .unwrap();
                    let mut line = String::new();
                    c.read_line(&mut line).await.unwrap();
                    if let Some(len) = line.strip_prefix("VA ") {
                        let len: usize = len.trim().split(' ').next().unwrap().parse().unwrap();
                        let mut buf = vec![0; len + 2];
                        c.read_exact(&mut buf).await.unwrap();
                    }
                    let value = next_value().into_bytes();
                    let mut cmd = format!("ms {key} {} T1800\r\n", value.len()).into_bytes();
                    cmd.extend_from_slice(&value);
                    cmd.extend_from_slice(b"\r\n");
                    c.get_mut().write_all(&cmd).await.unwrap();
                    line.clear();
                    c.read_line(&mut line).await.unwrap();
                    assert_eq!(line, "HD\r\n");
                }
                Raw::Pg(p, q) => {
                    let row = sqlx::query(q.select.clone())
                        .bind("k")
                        .fetch_one(&*p)
                        .await
                        .unwrap();
                    let v: String = row.get(0);
                    assert!(!v.is_empty());
                    // A changed value: SQLite skips writing a row that an update leaves as
                    // it was, which would make the baseline write nothing at all.
                    sqlx::query(q.update.clone())
                        .bind(next_value())
                        .bind("k")
                        .execute(&*p)
                        .await
                        .unwrap();
                }
                Raw::Sqlite(p, q) => {
                    let row = sqlx::query(q.select.clone())
                        .bind("k")
                        .fetch_one(&*p)
                        .await
                        .unwrap();
                    let v: String = row.get(0);
                    assert!(!v.is_empty());
                    // A changed value: SQLite skips writing a row that an update leaves as
                    // it was, which would make the baseline write nothing at all.
                    sqlx::query(q.update.clone())
                        .bind(next_value())
                        .bind("k")
                        .execute(&*p)
                        .await
                        .unwrap();
                }
            }
        }
        start.elapsed() / u32::try_from(ops.max(1)).unwrap()
    }

    async fn cleanup(&mut self) {
        match self {
            Raw::Redis(c, key) => {
                let _: () = c.del(&*key).await.unwrap();
            }
            Raw::Memcached(..) => {}
            Raw::Pg(p, q) => {
                sqlx::query(sql(format!("DROP TABLE {}", q.table)))
                    .execute(&*p)
                    .await
                    .unwrap();
                sqlx::query(sql(format!(
                    "DROP TABLE {}",
                    q.table.trim_end_matches("_raw")
                )))
                .execute(&*p)
                .await
                .unwrap();
            }
            Raw::Sqlite(..) => {}
        }
    }
}
