//! Test support: store URLs, a small app built on the kit, a browser-like cookie holder and a
//! TCP proxy that can be cut and restored to simulate a store that dies and comes back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use shoal_kit::{Session, SessionConfig, SessionLayer, SessionStore, StoreOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Redis,
    Memcached,
    Postgres,
    Sqlite,
}

/// A store URL for `kind`, plus the temporary directory that must outlive a SQLite one.
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) namespace: String,
    _dir: Option<tempfile::TempDir>,
}

/// The server URL of `kind` from the environment, or `None` after saying the test is NOT RUN.
pub(crate) fn target(kind: Kind, test: &str) -> Option<Target> {
    let namespace = format!("kit_{}_{}", test, unique());
    let (var, dir) = match kind {
        Kind::Redis => ("SHOAL_TEST_REDIS_URL", None),
        Kind::Memcached => ("SHOAL_TEST_MEMCACHED_URL", None),
        Kind::Postgres => ("SHOAL_TEST_DATABASE_URL", None),
        Kind::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("sessions.db").display());
            return Some(Target {
                url,
                namespace,
                _dir: Some(dir),
            });
        }
    };
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(Target {
            url,
            namespace,
            _dir: dir,
        }),
        _ => {
            // Straight to stderr, past the test harness's capture, so it shows in every run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "NOT RUN: {test} against {kind:?}: `{var}` is not set"
            );
            None
        }
    }
}

pub(crate) fn unique() -> String {
    let mut b = [0u8; 6];
    getrandom_fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom_fill(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(b)
        .unwrap();
}

impl Drop for Target {
    /// Drops a test's PostgreSQL table, also after a failure (Redis and Memcached keys expire
    /// by themselves; SQLite lives in the temporary directory).
    fn drop(&mut self) {
        if !self.url.starts_with("postgres") {
            return;
        }
        let (url, table) = (self.url.clone(), self.namespace.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let drop = sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}"));
                    let _ = sqlx::query(drop).execute(&pool).await;
                }
            });
        })
        .join();
    }
}

impl Target {
    pub(crate) async fn store(&self) -> SessionStore {
        self.store_at(&self.url, Duration::from_secs(5)).await
    }

    pub(crate) async fn store_at(&self, url: &str, timeout: Duration) -> SessionStore {
        let options = StoreOptions::default()
            .with_namespace(&self.namespace)
            .with_timeout(timeout)
            .with_cleanup_interval(Duration::from_millis(500));
        SessionStore::connect(url, options)
            .await
            .unwrap_or_else(|e| panic!("connect: {e:?}"))
    }
}

/// The app every session test drives.
pub(crate) fn app(store: SessionStore, config: SessionConfig) -> Router {
    app_with(SessionLayer::new(store, config))
}

/// The same app behind a session layer the test built.
pub(crate) fn app_with(layer: SessionLayer) -> Router {
    Router::new()
        .route("/get/{key}", get(read))
        .route(
            "/set/{key}/{value}",
            post(|s: Session, Path((k, v)): Path<(String, String)>| write(s, k, v, 0)),
        )
        .route(
            "/set/{key}/{value}/{delay}",
            post(|s: Session, Path((k, v, d)): Path<(String, String, u64)>| write(s, k, v, d)),
        )
        .route("/login", post(login))
        .route(
            "/logout",
            post(|s: Session| async move {
                s.delete();
                "bye"
            }),
        )
        .layer(layer)
}

async fn read(
    session: Session,
    Path(key): Path<String>,
) -> Result<String, shoal_kit::SessionError> {
    Ok(session
        .get::<String>(&key)?
        .unwrap_or_else(|| "-".to_owned()))
}

/// Sets `key` and then waits `delay` ms, so the save happens long after the load.
async fn write(
    session: Session,
    key: String,
    value: String,
    delay: u64,
) -> Result<&'static str, shoal_kit::SessionError> {
    session.insert(&key, value)?;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    Ok("ok")
}

async fn login(session: Session) -> Result<&'static str, shoal_kit::SessionError> {
    session.cycle();
    session.insert("user", "alice")?;
    Ok("welcome")
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) set_cookie: Option<String>,
    pub(crate) body: String,
}

impl Reply {
    /// The id the reply hands out: `Some("")` when it removes the cookie.
    pub(crate) fn issued(&self) -> Option<String> {
        let c = self.set_cookie.as_deref()?;
        let first = c.split(';').next()?;
        Some(first.split_once('=')?.1.to_owned())
    }
}

/// Sends one request through `app` in-process, with `cookie` as the session cookie.
pub(crate) async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Reply {
    send_with(app, method, path, cookie, &[]).await
}

pub(crate) async fn send_with(
    app: &Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("other=1; shoal_session={c}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let set_cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status,
        set_cookie,
        body,
    }
}

/// Polls `check` every 100 ms until it holds or `deadline` passes.
pub(crate) async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy on a fixed local port that can be cut (listener and every connection closed)
/// and restored, to make a store server look dead and then come back.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub(crate) async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            addr,
            target: target.to_owned(),
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    pub(crate) fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub(crate) async fn restore(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `url` with its `host:port` replaced by `addr`, and the original `host:port`.
pub(crate) fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    (
        format!("{scheme}://{userinfo}{addr}{tail}"),
        host.to_owned(),
    )
}
