//! The URL fetcher: downloads an `http` or `https` URL as a stream of chunks, and reaches only
//! the public internet.
//!
//! The worker hands it a URL a user typed; [`crate::pipeline::digest_url`] streams what it
//! returns through the hashers. It talks to nothing but DNS and the server it downloads from.
//!
//! # What it refuses
//! - Schemes other than `http` and `https`, URLs with a user name or password, and the ports
//!   browsers refuse (SMTP, SSH, ...: a request there is not HTTP).
//! - Every address that is not public internet (see [`AddressClass`]): loopback, private
//!   (RFC 1918, ULA `fc00::/7`), link-local, shared/CGNAT `100.64.0.0/10`, multicast,
//!   broadcast, unspecified, documentation and other reserved ranges, and cloud metadata
//!   services (`169.254.169.254`, `fd00:ec2::254`, ...). IPv6 addresses that embed an IPv4
//!   one (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the
//!   IPv4 address; IPv4-compatible `::a.b.c.d` is refused outright.
//!
//! # How
//! The host is parsed as a browser does (WHATWG URL rules, so `127.1`, `2130706433`,
//! `0x7f.1` and `0177.0.0.1` all become `127.0.0.1`), a name is resolved once, every resolved
//! address is checked, and the connection is opened to a checked address itself: the address
//! checked is the address connected to, so DNS rebinding gains nothing. Redirects are followed
//! here, not by a library, and every hop goes through the same checks. No proxy settings are
//! read from the environment.
//!
//! hyper sends the request and parses the answer's head; a body that `Content-Length`
//! delimits is then read from the connection by [`Download::read_into`] straight into the
//! caller's buffer (the pipeline's blocks), without hyper's buffer and a copy out of it
//! (`head` stops hyper's reads at the end of the head). hyper decodes any other body.
//!
//! # Limits
//! [`FetchPolicy`] sets the largest accepted size (refused up front when `Content-Length`
//! says so, and enforced while streaming otherwise), one deadline for the whole download
//! (connecting, redirects and body), and the number of redirects followed.
//! `allow_loopback: true` opens loopback addresses (`127.0.0.0/8`, `::1`, `localhost`) and
//! nothing else: it is meant for tests and local demos, never for a public deployment.
//!
//! ```no_run
//! # async fn demo() -> Result<(), digest_app::fetch::FetchError> {
//! use digest_app::fetch::{FetchPolicy, Fetcher};
//! let fetcher = Fetcher::new(FetchPolicy::default())?;
//! let mut download = fetcher.get("https://example.com/file.bin").await?;
//! while let Some(chunk) = download.chunk().await {
//!     let bytes = chunk?;
//!     // ...
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_core::Stream;
use http_body_util::Empty;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use url::{Host, Position, Url};

mod head;

use head::Gated;

/// What the fetcher may do. [`Default`]: public addresses only, 1 GiB, 10 minutes,
/// 5 redirects.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Also connect to loopback addresses (`127.0.0.0/8`, `::1`). For tests and local demos
    /// only; private, link-local and every other non-public range stay refused.
    pub allow_loopback: bool,
    /// The largest download accepted, in bytes.
    pub max_bytes: u64,
    /// The deadline for the whole download: resolving, connecting, redirects and the body.
    pub timeout: Duration,
    /// How many redirects are followed; one more is an error.
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow_loopback: false,
            max_bytes: 1 << 30,
            timeout: Duration::from_secs(600),
            max_redirects: 5,
        }
    }
}

impl FetchPolicy {
    /// Whether this policy lets the fetcher connect to `ip`; the refusal names the range.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), AddressClass> {
        match classify(ip) {
            AddressClass::Public => Ok(()),
            AddressClass::Loopback if self.allow_loopback => Ok(()),
            class => Err(class),
        }
    }
}

/// Downloads URLs under a [`FetchPolicy`]. Cheap to clone; build one per process.
#[derive(Clone)]
pub struct Fetcher {
    policy: FetchPolicy,
    tls: TlsConnector,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The read buffer hyper may grow to, which bounds the chunks of the bodies hyper decodes
/// (chunked, or delimited by the connection's end; reads of up to 1 MiB were seen with
/// 512 KiB). The pipeline copies each chunk into its blocks at once, so the size only trades
/// memory for system calls: 512 KiB reads a GiB in about 2,200 `recvfrom` and 3,200
/// `epoll_wait` calls, where 128 KiB took 8,300 and 8,400.
const MAX_READ_BUFFER: usize = 512 * 1024;

impl Fetcher {
    /// A fetcher trusting the Mozilla root certificates (webpki-roots) for `https`.
    pub fn new(policy: FetchPolicy) -> Result<Fetcher, FetchError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Setup {
                cause: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Fetcher {
            policy,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The policy this fetcher enforces.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Starts downloading `url`: resolves, checks and connects, follows redirects, and returns
    /// once a `2xx` answer's headers are in. The body is read from the [`Download`].
    pub async fn get(&self, url: &str) -> Result<Download, FetchError> {
        let deadline = Instant::now() + self.policy.timeout;
        let mut url = self.check_url(parse_url(url)?)?;
        let mut redirects = 0;
        loop {
            let (response, connection, gate) =
                match tokio::time::timeout_at(deadline, self.request(&url)).await {
                    Ok(answer) => answer?,
                    Err(_) => return Err(self.timeout_error()),
                };
            let status = response.status();
            let location = response.headers().get(hyper::header::LOCATION);
            if let Some(location) = location.filter(|_| is_redirect(status)) {
                if redirects == self.policy.max_redirects {
                    return Err(FetchError::TooManyRedirects {
                        limit: self.policy.max_redirects,
                    });
                }
                redirects += 1;
                // Relative locations are resolved against the current URL.
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|location| url.join(location).ok())
                    .ok_or_else(|| FetchError::BadRedirect {
                        location: shorten(&String::from_utf8_lossy(location.as_bytes())),
                    })?;
                url = self.check_url(next)?;
                drop(connection);
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    code: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("").to_owned(),
                });
            }
            let content_length = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok());
            if content_length.is_some_and(|length| length > self.policy.max_bytes) {
                return Err(FetchError::TooLarge {
                    limit: self.policy.max_bytes,
                });
            }
            // A body that Content-Length delimits is read here, straight into the caller's
            // buffers; hyper decodes any other (chunked, or up to the connection's end).
            let delimited = content_length.filter(|_| {
                !matches!(status, StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT)
                    && !response
                        .headers()
                        .contains_key(hyper::header::TRANSFER_ENCODING)
            });
            let body = match delimited.and_then(|length| Some((length, gate.take_body()?))) {
                Some((length, (io, early))) => Transfer::Direct {
                    io,
                    early: Bytes::from(early),
                    left: length,
                },
                None => {
                    gate.open();
                    Transfer::Hyper {
                        body: response.into_body(),
                        rest: Bytes::new(),
                    }
                }
            };
            return Ok(Download {
                body,
                spare: Vec::new(),
                content_length,
                final_url: url.into(),
                received: 0,
                max_bytes: self.policy.max_bytes,
                timeout: self.policy.timeout,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                finished: false,
                _connection: connection,
            });
        }
    }

    fn timeout_error(&self) -> FetchError {
        FetchError::Timeout {
            limit: self.policy.timeout,
        }
    }

    /// The checks that need no network: scheme, credentials, port.
    fn check_url(&self, url: Url) -> Result<Url, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Scheme {
                scheme: shorten(url.scheme()),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Credentials);
        }
        let port = url.port_or_known_default().unwrap_or(0);
        if BAD_PORTS.binary_search(&port).is_ok() {
            return Err(FetchError::Port { port });
        }
        if url.host().is_none() {
            return Err(FetchError::InvalidUrl {
                url: shorten(url.as_str()),
                reason: "it has no host".to_owned(),
            });
        }
        Ok(url)
    }

    /// One request/response exchange with the host of `url`, on a new connection to a
    /// checked address.
    async fn request(
        &self,
        url: &Url,
    ) -> Result<(Response<Incoming>, Connection, Box<dyn Gate>), FetchError> {
        let host = url.host().expect("checked by check_url");
        let port = url
            .port_or_known_default()
            .expect("http and https have default ports");
        let host_name = host.to_string();
        let addresses: Vec<SocketAddr> = match host {
            Host::Ipv4(ip) => vec![SocketAddr::new(ip.into(), port)],
            Host::Ipv6(ip) => vec![SocketAddr::new(ip.into(), port)],
            Host::Domain(domain) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|e| FetchError::Resolve {
                    host: host_name.clone(),
                    cause: e.to_string(),
                })?
                .collect(),
        };
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addresses
            .into_iter()
            .filter(|address| match self.policy.check_address(address.ip()) {
                Ok(()) => true,
                Err(class) => {
                    refused.get_or_insert((address.ip(), class));
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(match refused {
                Some((address, class)) => FetchError::Forbidden {
                    host: host_name,
                    address,
                    class,
                },
                None => FetchError::NoAddress { host: host_name },
            });
        }

        let mut failure = None;
        let mut stream = None;
        for address in allowed {
            // `address` passed check_address above, and it is the address connected to.
            match TcpStream::connect(address).await {
                Ok(connected) => {
                    stream = Some(connected);
                    break;
                }
                Err(e) => failure = Some((address, e)),
            }
        }
        let Some(stream) = stream else {
            let (address, e) = failure.expect("at least one address was tried");
            return Err(FetchError::Connect {
                host: host_name,
                address,
                cause: e.to_string(),
            });
        };
        let _ = stream.set_nodelay(true);

        let request = Request::get(&url[Position::BeforePath..Position::AfterQuery])
            .header(hyper::header::HOST, url.authority())
            .header(hyper::header::USER_AGENT, "digest (shoal reference app)")
            .header(hyper::header::ACCEPT, "*/*")
            .header(hyper::header::ACCEPT_ENCODING, "identity")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::InvalidUrl {
                url: shorten(url.as_str()),
                reason: e.to_string(),
            })?;

        if url.scheme() == "https" {
            let server_name = match host {
                Host::Domain(domain) => rustls::pki_types::ServerName::try_from(domain.to_owned())
                    .map_err(|e| FetchError::InvalidUrl {
                        url: shorten(url.as_str()),
                        reason: e.to_string(),
                    })?,
                Host::Ipv4(ip) => rustls::pki_types::ServerName::IpAddress(IpAddr::V4(ip).into()),
                Host::Ipv6(ip) => rustls::pki_types::ServerName::IpAddress(IpAddr::V6(ip).into()),
            };
            let tls = self
                .tls
                .connect(server_name, stream)
                .await
                .map_err(|e| FetchError::Tls {
                    host: host_name.clone(),
                    permanent: e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
                    cause: e.to_string(),
                })?;
            exchange(tls, request, &host_name).await
        } else {
            exchange(stream, request, &host_name).await
        }
    }
}

async fn exchange<T>(
    io: T,
    request: Request<Empty<Bytes>>,
    host: &str,
) -> Result<(Response<Incoming>, Connection, Box<dyn Gate>), FetchError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gated = Gated::new(io);
    let http_error = |e: hyper::Error| FetchError::Http {
        host: host.to_owned(),
        cause: error_chain(&e),
    };
    let (mut sender, connection) = http1::Builder::new()
        .max_buf_size(MAX_READ_BUFFER)
        .handshake(TokioIo::new(gated.clone()))
        .await
        .map_err(http_error)?;
    let connection = Connection(tokio::spawn(async move {
        // Errors reach the response or its body through `sender`.
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await.map_err(http_error)?;
    Ok((response, connection, Box::new(gated)))
}

/// The connection under a [`Gated`], whatever its type.
type Reader = Box<dyn AsyncRead + Unpin + Send>;

/// [`Gated::take_body`] and [`Gated::open`] for a connection of any type.
trait Gate: Send {
    fn take_body(&self) -> Option<(Reader, Vec<u8>)>;
    fn open(&self);
}

impl<T: AsyncRead + Unpin + Send + 'static> Gate for Gated<T> {
    fn take_body(&self) -> Option<(Reader, Vec<u8>)> {
        Gated::take_body(self).map(|(io, early)| (Box::new(io) as Reader, early))
    }

    fn open(&self) {
        Gated::open(self);
    }
}

fn parse_url(raw: &str) -> Result<Url, FetchError> {
    Url::parse(raw.trim()).map_err(|e| FetchError::InvalidUrl {
        url: shorten(raw),
        reason: e.to_string(),
    })
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Where a body's bytes come from.
enum Transfer {
    /// The connection itself: `early` is what came with the head, then `left` more bytes
    /// (`Content-Length`) are read straight into the caller's buffers.
    Direct { io: Reader, early: Bytes, left: u64 },
    /// hyper decodes it (chunked, or delimited by the end of the connection); `rest` is what
    /// [`Download::read_into`] has not yet taken of hyper's last chunk.
    Hyper { body: Incoming, rest: Bytes },
}

/// The task driving one HTTP connection; dropping it closes the connection.
struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body being downloaded: a [`Stream`] of chunks, or read into the caller's
/// buffers with [`Download::read_into`], within the size limit and the deadline. Dropping it
/// closes the connection.
pub struct Download {
    body: Transfer,
    /// The buffer of the next chunk [`Stream::poll_next`] reads from a direct body.
    spare: Vec<u8>,
    content_length: Option<u64>,
    final_url: String,
    received: u64,
    max_bytes: u64,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    finished: bool,
    _connection: Connection,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("final_url", &self.final_url)
            .field("content_length", &self.content_length)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// The size the server announced (`Content-Length`), when it did.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The URL the body comes from, after redirects.
    pub fn final_url(&self) -> &str {
        &self.final_url
    }

    /// The next chunk; `None` once the body is complete (or after an error).
    pub async fn chunk(&mut self) -> Option<Result<Bytes, FetchError>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Reads the next bytes of the body into `space`: how many, 0 once the body is complete
    /// (or after an error). A body that `Content-Length` delimits goes from the connection
    /// straight into `space`; any other is copied from hyper's chunks.
    pub async fn read_into(&mut self, space: &mut [u8]) -> Result<usize, FetchError> {
        poll_fn(|cx| self.poll_read_into(cx, space)).await
    }

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        space: &mut [u8],
    ) -> Poll<Result<usize, FetchError>> {
        if self.finished || space.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.deadline.is_elapsed() {
            self.finished = true;
            return Poll::Ready(Err(FetchError::Timeout {
                limit: self.timeout,
            }));
        }
        let read = match &mut self.body {
            Transfer::Direct { io, early, left } => {
                if *left == 0 {
                    self.finished = true;
                    return Poll::Ready(Ok(0));
                }
                let room = space
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                if early.is_empty() {
                    let mut buf = ReadBuf::new(&mut space[..room]);
                    match Pin::new(io).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => Err(format!(
                            "the connection closed {left} bytes before the end of the body"
                        )),
                        Poll::Ready(Ok(())) => Ok(buf.filled().len()),
                        Poll::Ready(Err(e)) => Err(error_chain(&e)),
                        Poll::Pending => return self.poll_deadline(cx),
                    }
                } else {
                    let n = room.min(early.len());
                    space[..n].copy_from_slice(&early[..n]);
                    early.advance(n);
                    Ok(n)
                }
                .inspect(|&n| *left -= n as u64)
            }
            Transfer::Hyper { rest, .. } => {
                if rest.is_empty() {
                    match self.poll_chunk(cx) {
                        Poll::Ready(Some(Ok(chunk))) => {
                            // `poll_chunk` counted it in `received` already.
                            self.received -= chunk.len() as u64;
                            if let Transfer::Hyper { rest, .. } = &mut self.body {
                                *rest = chunk;
                            }
                        }
                        Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                        Poll::Ready(None) => return Poll::Ready(Ok(0)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let Transfer::Hyper { rest, .. } = &mut self.body else {
                    unreachable!("the body's transfer does not change")
                };
                let n = space.len().min(rest.len());
                space[..n].copy_from_slice(&rest[..n]);
                rest.advance(n);
                Ok(n)
            }
        };
        match read {
            Ok(n) => {
                self.received += n as u64;
                Poll::Ready(Ok(n))
            }
            Err(cause) => {
                self.finished = true;
                Poll::Ready(Err(FetchError::Http {
                    host: self.host(),
                    cause,
                }))
            }
        }
    }

    /// A read is pending: the timeout error once the deadline has passed, else pending (the
    /// deadline wakes the task when it comes).
    fn poll_deadline<T>(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, FetchError>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.finished = true;
            return Poll::Ready(Err(FetchError::Timeout {
                limit: self.timeout,
            }));
        }
        Poll::Pending
    }

    /// The host of the URL the body comes from, for error messages.
    fn host(&self) -> String {
        Url::parse(&self.final_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The next chunk of a body that hyper decodes, counted in `received`.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, FetchError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.deadline.is_elapsed() {
            return self.fail(FetchError::Timeout {
                limit: self.timeout,
            });
        }
        let Transfer::Hyper { body, .. } = &mut self.body else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    if data.is_empty() {
                        continue;
                    }
                    self.received += data.len() as u64;
                    if self.received > self.max_bytes {
                        return self.fail(FetchError::TooLarge {
                            limit: self.max_bytes,
                        });
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Poll::Ready(Some(Err(e))) => {
                    let host = self.host();
                    return self.fail(FetchError::Http {
                        host,
                        cause: error_chain(&e),
                    });
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return self.poll_deadline::<()>(cx).map(|r| r.err().map(Err)),
            }
        }
    }

    fn fail(&mut self, error: FetchError) -> Poll<Option<Result<Bytes, FetchError>>> {
        self.finished = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Download {
    type Item = Result<Bytes, FetchError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        /// The largest chunk read from a direct body.
        const CHUNK: usize = 256 * 1024;
        let this = self.get_mut();
        match &mut this.body {
            Transfer::Hyper { rest, .. } if !rest.is_empty() => {
                let chunk = std::mem::take(rest);
                this.received += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Transfer::Hyper { .. } => this.poll_chunk(cx),
            Transfer::Direct { early, left, .. } if !early.is_empty() => {
                let n = early
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                let chunk = early.split_to(n);
                *left -= n as u64;
                this.received += n as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Transfer::Direct { left, .. } => {
                let size = CHUNK.min(usize::try_from(*left).unwrap_or(usize::MAX));
                let mut chunk = std::mem::take(&mut this.spare);
                chunk.resize(size.max(1), 0);
                let read = this.poll_read_into(cx, &mut chunk);
                match read {
                    Poll::Ready(Ok(0)) => Poll::Ready(None),
                    Poll::Ready(Ok(n)) => {
                        chunk.truncate(n);
                        Poll::Ready(Some(Ok(Bytes::from(chunk))))
                    }
                    Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                    Poll::Pending => {
                        this.spare = chunk;
                        Poll::Pending
                    }
                }
            }
        }
    }
}

/// Why a download failed. `Display` is a readable reason for the user (it includes the
/// underlying cause); [`FetchError::is_retryable`] says whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The text is not a URL.
    #[error("`{url}` is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A scheme other than http and https.
    #[error("only http and https URLs can be fetched, not `{scheme}:`")]
    Scheme { scheme: String },
    /// A user name or password in the URL.
    #[error("URLs with a user name or password are not fetched")]
    Credentials,
    /// A port that belongs to another protocol.
    #[error("port {port} is not fetched: it belongs to a protocol other than HTTP")]
    Port { port: u16 },
    /// The host is, or resolves only to, an address outside the public internet. The message
    /// never shows an address that a name resolved to ([`FetchError::detail`] does, for logs).
    #[error("refused to fetch from `{host}`: {}", describe_refusal(host, *class))]
    Forbidden {
        host: String,
        address: IpAddr,
        class: AddressClass,
    },
    /// The name could not be resolved.
    #[error("cannot resolve `{host}`: {cause}")]
    Resolve { host: String, cause: String },
    /// The name resolved to no address.
    #[error("`{host}` has no address")]
    NoAddress { host: String },
    /// No connection could be opened.
    #[error("cannot connect to `{host}` at `{address}`: {cause}")]
    Connect {
        host: String,
        address: SocketAddr,
        cause: String,
    },
    /// The TLS handshake failed; `permanent` when the server's certificate or protocol was
    /// refused rather than the connection lost.
    #[error("TLS handshake with `{host}` failed: {cause}")]
    Tls {
        host: String,
        cause: String,
        permanent: bool,
    },
    /// The connection failed during the HTTP exchange or the body.
    #[error("the connection to `{host}` failed: {cause}")]
    Http { host: String, cause: String },
    /// The server answered something other than 2xx or a redirect.
    #[error("the server answered {code} {reason}")]
    Status { code: u16, reason: String },
    /// A redirect whose `Location` is not a URL.
    #[error("the server redirected to `{location}`, which is not a valid URL")]
    BadRedirect { location: String },
    /// More redirects than the policy allows.
    #[error("the server redirected more than {limit} times")]
    TooManyRedirects { limit: usize },
    /// The body is larger than the policy allows.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The download did not finish before the deadline.
    #[error("the download did not finish within the limit of {} s", limit.as_secs_f64())]
    Timeout { limit: Duration },
    /// The TLS configuration could not be built.
    #[error("cannot set up TLS: {cause}")]
    Setup { cause: String },
}

impl FetchError {
    /// What the message leaves out because the user must not learn it (the address a name
    /// resolved to and its range), for the server's log.
    pub fn detail(&self) -> Option<String> {
        match self {
            FetchError::Forbidden {
                host,
                address,
                class,
            } => Some(format!("`{host}` resolved to `{address}`, {class}")),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: network failures, timeouts, `5xx`,
    /// `408` and `429` may; refused addresses, bad URLs, other `4xx`, certificate errors
    /// and size limits will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Resolve { .. }
            | FetchError::Connect { .. }
            | FetchError::Http { .. }
            | FetchError::Timeout { .. } => true,
            FetchError::Tls { permanent, .. } => !permanent,
            FetchError::Status { code, .. } => *code >= 500 || *code == 408 || *code == 429,
            _ => false,
        }
    }
}

fn describe_refusal(host: &str, class: AddressClass) -> String {
    // An address typed as such (`[::ffff:7f00:1]`, `127.1`) is the user's own: naming its
    // range tells them nothing new. What a name resolves to is the internal network's answer:
    // it is not told (the worker logs it), or fetching names would map that network.
    let literal = host.starts_with('[') || host.parse::<IpAddr>().is_ok();
    if literal {
        format!("it is {class}; only public internet addresses are fetched")
    } else {
        "it resolves to an address that is not on the public internet; only public internet \
         addresses are fetched"
            .to_owned()
    }
}

/// An error and its causes on one line: hyper's own message names only the kind.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// User-supplied text in messages is cut to a readable length.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Ports a browser refuses to fetch from (the Fetch standard's "bad ports"), sorted.
const BAD_PORTS: &[u16] = &[
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
    102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427,
    465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990,
    993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
    6668, 6669, 6679, 6697, 10080,
];

/// The kind of network an IP address belongs to; only [`AddressClass::Public`] is fetched
/// (and [`AddressClass::Loopback`] with `allow_loopback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressClass {
    /// A public internet address.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique local `fc00::/7`, site-local
    /// `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Shared address space (carrier-grade NAT) `100.64.0.0/10`.
    SharedNat,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Everything else that is not routed on the internet: `240/4`, benchmarking
    /// `198.18/15`, IETF protocol assignments, IPv4-compatible IPv6, IPv6 outside `2000::/3`.
    Reserved,
    /// A cloud provider's metadata or platform service: `169.254.169.254`, `fd00:ec2::254`,
    /// `100.100.100.200`, `168.63.129.16`.
    CloudMetadata,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private network address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::SharedNat => "a shared (carrier-grade NAT) address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Documentation => "an address reserved for documentation",
            AddressClass::Reserved => "a reserved address",
            AddressClass::CloudMetadata => "a cloud metadata service address",
        })
    }
}

/// The network `ip` belongs to. IPv6 addresses embedding an IPv4 address (mapped, NAT64,
/// 6to4) are classified by the embedded address.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let [a, b, c, d] = ip.octets();
    match [a, b, c, d] {
        [169, 254, 169, 254] | [100, 100, 100, 200] | [168, 63, 129, 16] => CloudMetadata,
        [0, ..] => Unspecified,
        [10, ..] => Private,
        [100, b, ..] if b & 0xC0 == 64 => SharedNat,
        [127, ..] => Loopback,
        [169, 254, ..] => LinkLocal,
        [172, b, ..] if b & 0xF0 == 16 => Private,
        [192, 168, ..] => Private,
        [192, 0, 0, _] | [192, 88, 99, _] => Reserved,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Documentation,
        [198, b, ..] if b & 0xFE == 18 => Reserved,
        [224..=239, ..] => Multicast,
        [255, 255, 255, 255] => Broadcast,
        [240..=255, ..] => Reserved,
        _ => Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    let s = ip.segments();
    let embedded = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
        return CloudMetadata;
    }
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    match s {
        // IPv4-compatible (deprecated): nothing legitimate uses it.
        [0, 0, 0, 0, 0, 0, _, _] => Reserved,
        // NAT64 well-known prefix: the translator connects to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => classify_v4(embedded(high, low)),
        [0x64, 0xff9b, 1, ..] => Private,
        [0xff00..=0xffff, ..] => Multicast,
        [0xfe80..=0xfebf, ..] => LinkLocal,
        [0xfec0..=0xfeff, ..] | [0xfc00..=0xfdff, ..] => Private,
        [0x2001, 0x0db8, ..] | [0x3fff, 0..=0x0fff, ..] => Documentation,
        // IETF protocol assignments, Teredo (an obfuscated IPv4 address) among them.
        [0x2001, 0..=0x01ff, ..] => Reserved,
        // 6to4: the relay forwards to the embedded IPv4 address.
        [0x2002, high, low, ..] => match classify_v4(embedded(high, low)) {
            Public => Public,
            _ => Reserved,
        },
        [0x2000..=0x3fff, ..] => Public,
        _ => Reserved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddressClass {
        classify(text.parse().unwrap())
    }

    #[test]
    fn classifies_ipv4_ranges() {
        use AddressClass::*;
        for (address, expected) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.63.255.255", Public),
            ("100.64.0.1", SharedNat),
            ("100.127.255.255", SharedNat),
            ("100.128.0.0", Public),
            ("100.100.100.200", CloudMetadata),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("168.63.129.16", CloudMetadata),
            ("172.15.255.255", Public),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.0", Public),
            ("192.0.0.170", Reserved),
            ("192.0.2.1", Documentation),
            ("192.88.99.1", Reserved),
            ("192.168.1.1", Private),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("198.20.0.0", Public),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("93.184.216.34", Public),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn classifies_ipv6_ranges() {
        use AddressClass::*;
        for (address, expected) in [
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Reserved),
            ("::8.8.8.8", Reserved),
            ("::ffff:0:127.0.0.1", Reserved),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::a9fe:a9fe", CloudMetadata),
            ("64:ff9b::8.8.8.8", Public),
            ("64:ff9b:1::1", Private),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2002:7f00:1::1", Reserved),
            ("2002:0808:0808::1", Public),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fd00:ec2::254", CloudMetadata),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("5f00::1", Reserved),
            ("4000::1", Reserved),
            ("2606:4700::1111", Public),
            ("2a00:1450:4001::200e", Public),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn loopback_setting_opens_loopback_only() {
        let open = FetchPolicy {
            allow_loopback: true,
            ..FetchPolicy::default()
        };
        let closed = FetchPolicy::default();
        for address in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip = address.parse().unwrap();
            assert_eq!(open.check_address(ip), Ok(()), "{address}");
            assert_eq!(closed.check_address(ip), Err(AddressClass::Loopback));
        }
        for address in ["10.0.0.1", "169.254.169.254", "fd00::1", "0.0.0.0", "::"] {
            assert!(
                open.check_address(address.parse().unwrap()).is_err(),
                "{address}"
            );
        }
    }

    #[test]
    fn bad_ports_are_sorted() {
        assert!(BAD_PORTS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn shortens_long_text_on_a_char_boundary() {
        let long = "é".repeat(300);
        let short = shorten(&long);
        assert!(short.len() <= 203 && short.ends_with("..."));
        assert_eq!(shorten("abc"), "abc");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn expected_v4(ip: Ipv4Addr) -> bool {
            // An independent statement of "public" from the standard library's predicates
            // plus the ranges it does not cover.
            let [a, b, c, _] = ip.octets();
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_multicast()
                || ip.is_broadcast()
                || ip.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 192 && b == 88 && c == 99)
                || (a == 198 && (b == 18 || b == 19))
                || ip == Ipv4Addr::new(168, 63, 129, 16))
        }

        proptest! {
            #[test]
            fn ipv4_public_matches_an_independent_definition(bits in any::<u32>()) {
                let ip = Ipv4Addr::from(bits);
                prop_assert_eq!(classify_v4(ip) == AddressClass::Public, expected_v4(ip));
            }

            #[test]
            fn every_ipv4_embedding_gets_the_ipv4_verdict_or_stricter(bits in any::<u32>()) {
                let ip = Ipv4Addr::from(bits);
                let verdict = classify_v4(ip);
                prop_assert_eq!(classify_v6(ip.to_ipv6_mapped()), verdict);
                let [a, b, c, d] = ip.octets();
                let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0,
                    u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
                prop_assert_eq!(classify_v6(nat64), verdict);
                if verdict != AddressClass::Public {
                    let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]),
                        u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
                    prop_assert_ne!(classify_v6(six_to_four), AddressClass::Public);
                    prop_assert_ne!(classify_v6(ip.to_ipv6_compatible()), AddressClass::Public);
                }
            }

            #[test]
            fn ipv6_outside_global_unicast_is_never_public(bits in any::<u128>()) {
                let ip = Ipv6Addr::from(bits);
                let first = ip.segments()[0];
                let embeds_v4 = ip.to_ipv4_mapped().is_some()
                    || ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
                if !embeds_v4 && !(0x2000..=0x3fff).contains(&first) {
                    prop_assert_ne!(classify_v6(ip), AddressClass::Public);
                }
            }
        }
    }
}
