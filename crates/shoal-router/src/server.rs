//! The public port: accepts client connections (at most `max_connections` at once — beyond
//! that, connections wait in the listen queue rather than being refused) and serves HTTP/1.1 on
//! each with a header timeout and a header size limit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shoal_supervisor::{Log, Snapshot};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::access_log::AccessLog;
use crate::backends::{Backends, RouterStats};
use crate::config::RouterConfig;
use crate::headers;
use crate::proxy::{self, Shared};

/// Why the router cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(
        "cannot listen on `{addr}`; is another program using the port? (choose another with `-p`)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound router, ready to serve.
pub struct Router {
    listener: TcpListener,
    config: RouterConfig,
    log: Log,
    stats: Arc<RouterStats>,
}

impl Router {
    /// Binds the public port, so that a port in use is an error before anything starts.
    pub async fn bind(config: RouterConfig, log: Log) -> Result<Router, RouterError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| RouterError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Router {
            listener,
            config,
            log,
            stats: Arc::default(),
        })
    }

    /// Requests per instance, for `shoal ps` and for draining.
    pub fn stats(&self) -> Arc<RouterStats> {
        self.stats.clone()
    }

    /// The address the public port is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// Serves, sending each request to a ready instance from the latest of `snapshots`, until
    /// `shutdown` resolves; then stops accepting connections (those already open are served
    /// until they close or shoal exits).
    pub async fn serve(
        self,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let public_port = self.local_addr().port();
        let Router {
            listener,
            config,
            log,
            stats,
        } = self;
        let shared = Arc::new(Shared {
            backends: Backends::new(snapshots, &config, stats.clone()),
            forwarded_port: HeaderValue::from(public_port),
            log: AccessLog::new(log, stats),
            config,
        });
        let config = &shared.config;
        shared.log.event(format!(
            "listening on http://{} and routing to ready `{}` instances ({})",
            listener.local_addr().unwrap_or(config.listen),
            config.process_type,
            match config.balance {
                crate::Balance::P2c => "power of two choices",
                crate::Balance::RoundRobin => "round robin",
                crate::Balance::Random => "random",
            }
        ));
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let mut accept_backoff = Duration::from_millis(5);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        shared.log.event(format!("cannot accept a connection: {err}; retrying in {} ms", accept_backoff.as_millis()));
                        tokio::time::sleep(accept_backoff).await;
                        accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            accept_backoff = Duration::from_millis(5);
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let _open = shared.log.stats.connection_opened();
                let client = headers::client_address(peer.ip());
                let handler = shared.clone();
                let for_handler = client.clone();
                let service = service_fn(move |request| {
                    proxy::handle(handler.clone(), for_handler.clone(), request)
                });
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(shared.config.header_timeout)
                    .max_header_size(shared.config.max_header_bytes)
                    .max_buf_size(shared.config.max_header_bytes.max(8192))
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
                drop(permit);
                if let Err(error) = served
                    && let Some((status, code)) = refusal(&error)
                {
                    shared.log.refused(&client, status, code);
                }
            });
        }
    }
}

/// What the HTTP/1 parser did with a request head it refused: the status it answered and the
/// code the access line gives it. hyper writes these answers itself, so they carry no
/// `X-Shoal-Error`. (A connection closed at the header timeout is not logged: that is also
/// how every idle keep-alive connection ends.)
fn refusal(error: &hyper::Error) -> Option<(u16, &'static str)> {
    if error.is_parse_too_large() {
        Some((431, "head_too_large"))
    } else if error.is_parse() && !error.is_parse_status() {
        Some((400, "malformed_request"))
    } else {
        None
    }
}
