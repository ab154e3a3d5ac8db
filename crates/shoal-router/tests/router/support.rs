//! Stand-in instances (hyper servers with a chosen behaviour), a router in front of them, and
//! small clients.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shoal_procfile::InstanceName;
use shoal_router::{Router, RouterConfig};
use shoal_supervisor::{InstanceInfo, Log, Snapshot, State, Style};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

pub(crate) fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A stand-in instance: an HTTP/1.1 server on a loopback port.
pub(crate) struct Instance {
    pub(crate) port: u16,
    /// Requests received.
    pub(crate) hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub(crate) connections: Arc<AtomicUsize>,
    /// Connections the instance has closed.
    pub(crate) closed: Arc<AtomicUsize>,
}

impl Instance {
    fn new(port: u16) -> Self {
        Instance {
            port,
            hits: Arc::default(),
            connections: Arc::default(),
            closed: Arc::default(),
        }
    }
}

/// Starts an instance answering with `handler`.
pub(crate) async fn instance<F, Fut>(handler: F) -> Instance
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = Instance::new(listener.local_addr().unwrap().port());
    let counted = instance.hits.clone();
    let connections = instance.connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    instance
}

/// An instance that answers every request with its name.
pub(crate) async fn named(name: &'static str) -> Instance {
    instance(move |_req| async move { Response::new(full(name)) }).await
}

/// A port where nothing listens (bound and released).
pub(crate) fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An instance that accepts connections, reads the request head, and closes without answering
/// (as a process that dies mid-request does). Counts the requests it swallowed.
pub(crate) async fn dies_after_reading() -> Instance {
    scripted(b"", true).await
}

/// An instance that answers every request with the bytes of `reply`, whatever they are, and
/// closes the connection after each answer when `close` is set (without saying so).
pub(crate) async fn scripted(reply: &'static [u8], close: bool) -> Instance {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = Instance::new(listener.local_addr().unwrap().port());
    let (hits, connections, closed) = (
        instance.hits.clone(),
        instance.connections.clone(),
        instance.closed.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let (hits, closed) = (hits.clone(), closed.clone());
            tokio::spawn(async move {
                while read_request(&mut stream).await.is_some() {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if stream.write_all(reply).await.is_err() || close {
                        break;
                    }
                }
                drop(stream);
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    instance
}

/// Reads one request (its head, and as many body bytes as its `Content-Length` says);
/// `None` when the connection ends first.
pub(crate) async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().unwrap_or(0));
            if request.len() >= end + 4 + length {
                return Some(request);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
}

/// The log, captured.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until the log has a line containing `needle`.
    pub(crate) async fn wait_for(&self, needle: &str) -> String {
        self.wait_for_n(1, needle).await.swap_remove(0)
    }

    /// Waits until the log has `n` lines containing `needle`; returns all of them.
    pub(crate) async fn wait_for_n(&self, n: usize, needle: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let lines: Vec<String> = self
                .text()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited for {n} log line(s) with `{needle}`, saw {}:\n{}",
                lines.len(),
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A running router and what it routes to.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) log: Captured,
    pub(crate) snapshots: watch::Sender<Arc<Snapshot>>,
    /// Requests per instance and the queue, as `shoal ps` sees them.
    pub(crate) stats: Arc<shoal_router::RouterStats>,
}

impl Running {
    /// Replaces the ready instances.
    pub(crate) fn set_ready(&self, ports: &[u16]) {
        self.snapshots.send_replace(snapshot(ports));
    }
}

fn snapshot(ports: &[u16]) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        instances: ports
            .iter()
            .enumerate()
            .map(|(i, &port)| InstanceInfo {
                name: InstanceName::new("web", i as u32 + 1),
                port,
                pid: Some(10_000 + i as u32),
                // The stand-in instances listen on 127.0.0.1.
                addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
                state: State::Ready,
                restarts: 0,
                restarts_by_cause: Default::default(),
                started_at: None,
                last_exit: None,
                last_cause: None,
                memory_limit: None,
            })
            .collect(),
    })
}

/// Starts a router on a free loopback port in front of `ports`, with `config` adjusted by
/// `tune`.
pub(crate) async fn router(ports: &[u16], tune: impl FnOnce(&mut RouterConfig)) -> Running {
    let mut config = RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ready_wait: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    tune(&mut config);
    let captured = Captured::default();
    let (log, _writer) = Log::start(Box::new(captured.clone()), Style { color: false }, 6);
    let (snapshots, receiver) = watch::channel(snapshot(ports));
    let router = Router::bind(config, log).await.unwrap();
    let addr = router.local_addr();
    let stats = router.stats();
    tokio::spawn(router.serve(receiver, std::future::pending()));
    Running {
        addr,
        log: captured,
        snapshots,
        stats,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

/// One client connection to the router (keep-alive: several requests may use it).
pub(crate) struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Client { sender }
    }

    pub(crate) async fn send(&mut self, request: Request<Full<Bytes>>) -> Answer {
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Answer {
        self.send(request("GET", path, "")).await
    }
}

pub(crate) fn request(method: &str, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// One request on a new connection.
pub(crate) async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    Client::connect(addr).await.send(request).await
}

/// Writes raw bytes to the router and reads until it closes the connection or `limit` passes.
pub(crate) async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
