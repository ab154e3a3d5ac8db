//! The URL fetcher against test servers on 127.0.0.1: what it fetches, and everything it
//! refuses. Refused addresses are refused before any connection, so these tests send
//! nothing anywhere but to loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use digest_app::fetch::{AddressClass, Download, FetchError, FetchPolicy, Fetcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a test server does with a request.
enum Answer {
    /// Writes these bytes and closes.
    Bytes(Vec<u8>),
    /// Writes these bytes (maybe none) and then neither writes nor closes.
    Stall(Vec<u8>),
}

struct Server {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Stalled connections the client has closed.
    closed: Arc<AtomicUsize>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A raw HTTP/1.1 server on 127.0.0.1 answering by request path.
async fn server(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (counter, closed_counter) = (connections.clone(), closed.clone());
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(socket, answer.clone(), closed_counter.clone()));
        }
    });
    Server {
        address,
        connections,
        closed,
    }
}

async fn handle(
    mut socket: TcpStream,
    answer: Arc<impl Fn(&str) -> Answer>,
    closed: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    match answer(&path) {
        Answer::Bytes(bytes) => {
            let _ = socket.write_all(&bytes).await;
            let _ = socket.shutdown().await;
        }
        Answer::Stall(bytes) => {
            let _ = socket.write_all(&bytes).await;
            // Never answer more; notice when the client hangs up.
            while let Ok(1..) = socket.read(&mut buffer).await {}
            closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn ok(body: &[u8]) -> Answer {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Answer::Bytes(bytes)
}

fn chunked(body: &[u8]) -> Answer {
    let mut bytes =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for piece in body.chunks(1000) {
        bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        bytes.extend_from_slice(piece);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    Answer::Bytes(bytes)
}

fn redirect(location: &str) -> Answer {
    Answer::Bytes(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    )
}

fn status(code: u16, reason: &str) -> Answer {
    Answer::Bytes(
        format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    )
}

fn loopback_policy() -> FetchPolicy {
    FetchPolicy {
        allow_loopback: true,
        timeout: Duration::from_secs(60),
        ..FetchPolicy::default()
    }
}

fn fetcher(policy: FetchPolicy) -> Fetcher {
    Fetcher::new(policy).unwrap()
}

/// Runs a fetch with an outer deadline, so that a broken fetcher fails the test instead of
/// hanging it.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the fetch did not end within 60 s")
}

async fn body(mut download: Download) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = download.chunk().await {
        body.extend_from_slice(&chunk?);
    }
    Ok(body)
}

async fn get_all(fetcher: &Fetcher, url: &str) -> Result<Vec<u8>, FetchError> {
    bounded(async { body(fetcher.get(url).await?).await }).await
}

fn forbidden_class(result: Result<impl std::fmt::Debug, FetchError>) -> AddressClass {
    match result {
        Err(FetchError::Forbidden { class, .. }) => class,
        other => panic!("expected a refused address, got {other:?}"),
    }
}

#[tokio::test]
async fn downloads_from_a_loopback_server_when_allowed() {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let served = content.clone();
    let server = server(move |path| match path {
        "/file" => ok(&served),
        "/chunked" => chunked(&served),
        _ => status(404, "Not Found"),
    })
    .await;
    let fetcher = fetcher(loopback_policy());

    let download = bounded(fetcher.get(&server.url("/file"))).await.unwrap();
    assert_eq!(download.content_length(), Some(content.len() as u64));
    assert_eq!(download.final_url(), server.url("/file"));
    assert_eq!(bounded(body(download)).await.unwrap(), content);

    let download = bounded(fetcher.get(&server.url("/chunked"))).await.unwrap();
    assert_eq!(download.content_length(), None);
    assert_eq!(bounded(body(download)).await.unwrap(), content);
}

/// The body comes out the same whichever way it is framed and read: `read_into` with buffers
/// of any size (a body that `Content-Length` delimits is read there straight from the
/// connection, after hyper has read its head) or `chunk()`. The answers include informational
/// heads before the final one, heads with bare `\n` line endings, and bytes after the end of
/// a delimited body, which are not part of it.
#[tokio::test]
async fn every_framing_reads_the_same_into_buffers_and_in_chunks() {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let served = content.clone();
    let server = server(move |path| {
        let with_head = |head: &str| {
            let mut bytes = head.as_bytes().to_vec();
            bytes.extend_from_slice(&served);
            bytes
        };
        let length = served.len();
        match path {
            "/file" => ok(&served),
            "/chunked" => chunked(&served),
            "/until-close" => {
                Answer::Bytes(with_head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"))
            }
            "/informational" => Answer::Bytes(with_head(&format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
                 HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n"
            ))),
            // Empty lines before a status line, which hyper's parser skips: a server may send
            // them, and they must not be taken for a head (the fetch waited for ever).
            "/leading-empty-lines" => Answer::Bytes(with_head(&format!(
                "\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\nHTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n"
            ))),
            "/bare-lf" => Answer::Bytes(with_head(&format!(
                "HTTP/1.1 200 OK\nContent-Length: {length}\n\n"
            ))),
            "/extra" => {
                let mut bytes = with_head(&format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n"
                ));
                bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\nnot part of the body");
                Answer::Bytes(bytes)
            }
            _ => status(404, "Not Found"),
        }
    })
    .await;
    let fetcher = fetcher(loopback_policy());
    for path in [
        "/file",
        "/chunked",
        "/until-close",
        "/informational",
        "/leading-empty-lines",
        "/bare-lf",
        "/extra",
    ] {
        let url = server.url(path);
        assert_eq!(
            get_all(&fetcher, &url).await.unwrap(),
            content,
            "{path} in chunks"
        );
        for size in [1 << 20, 65_536, 4097, 7] {
            let mut download = bounded(fetcher.get(&url)).await.unwrap();
            let mut body = Vec::new();
            let mut space = vec![0u8; size];
            loop {
                let n = bounded(download.read_into(&mut space)).await.unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&space[..n]);
            }
            assert!(
                body == content,
                "{path} read {size} bytes at a time: {} bytes",
                body.len()
            );
            assert_eq!(bounded(download.read_into(&mut space)).await, Ok(0));
        }
    }
}

/// A body that ends before its `Content-Length` is an error that a retry may mend, read
/// either way.
#[tokio::test]
async fn a_body_cut_short_is_a_retryable_error_read_either_way() {
    let server =
        server(|_| Answer::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()))
            .await;
    let fetcher = fetcher(loopback_policy());
    let mut download = bounded(fetcher.get(&server.url("/"))).await.unwrap();
    let mut space = [0u8; 64];
    let mut got = 0;
    let error = loop {
        match bounded(download.read_into(&mut space)).await {
            Ok(0) => panic!("the body ended without an error after {got} bytes"),
            Ok(n) => got += n,
            Err(error) => break error,
        }
    };
    assert_eq!(got, 5);
    assert!(matches!(error, FetchError::Http { .. }), "{error:?}");
    assert!(
        error.to_string().contains("95 bytes before the end"),
        "{error}"
    );
    assert!(error.is_retryable());
    assert_eq!(bounded(download.read_into(&mut space)).await, Ok(0));
}

#[tokio::test]
async fn localhost_resolves_to_loopback_and_is_refused_without_the_setting() {
    let server = server(|_| ok(b"hi")).await;
    let port = server.address.port();
    let url = format!("http://localhost:{port}/");

    let refused = get_all(&fetcher(FetchPolicy::default()), &url).await;
    let error = refused.as_ref().unwrap_err().clone();
    assert_eq!(forbidden_class(refused), AddressClass::Loopback);
    // The message is what the user sees as the job's error: it must not tell what an internal
    // name resolves to, nor the kind of network, only that the address is not public.
    assert_eq!(
        error.to_string(),
        "refused to fetch from `localhost`: it resolves to an address that is not on the \
         public internet; only public internet addresses are fetched"
    );
    let detail = error.detail().expect("the detail for the log");
    assert!(
        detail.contains("127.0.0.1") || detail.contains("::1"),
        "{detail}"
    );
    assert_eq!(server.connections(), 0);

    // With the setting, `localhost` works (its IPv6 address has no listener; the IPv4 one does).
    assert_eq!(
        get_all(&fetcher(loopback_policy()), &url).await.unwrap(),
        b"hi"
    );
}

#[tokio::test]
async fn loopback_in_every_spelling_is_refused_without_the_setting() {
    let server = server(|_| ok(b"hi")).await;
    let port = server.address.port();
    let fetcher = fetcher(FetchPolicy::default());
    for host in [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0177.0.0.1",
        "0177.1",
        "127.255.255.254",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:7f00:1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
    ] {
        let url = format!("http://{host}:{port}/");
        let result = get_all(&fetcher, &url).await;
        let message = result.as_ref().unwrap_err().to_string();
        assert_eq!(forbidden_class(result), AddressClass::Loopback, "{url}");
        assert!(message.contains("it is a loopback address"), "{message}");
    }
    for host in ["0", "0.0.0.0", "0x0", "[::]"] {
        let url = format!("http://{host}:{port}/");
        let result = get_all(&fetcher, &url).await;
        assert_eq!(forbidden_class(result), AddressClass::Unspecified, "{url}");
    }
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn non_public_addresses_are_refused_even_with_the_loopback_setting() {
    use AddressClass::*;
    let fetcher = fetcher(loopback_policy());
    for (host, expected) in [
        ("10.0.0.1", Private),
        ("172.16.5.4", Private),
        ("192.168.1.1", Private),
        ("169.254.169.254", CloudMetadata),
        ("0xa9fea9fe", CloudMetadata),
        ("2852039166", CloudMetadata),
        ("0251.0376.0251.0376", CloudMetadata),
        ("169.254.43518", CloudMetadata),
        ("[::ffff:169.254.169.254]", CloudMetadata),
        ("[::ffff:a9fe:a9fe]", CloudMetadata),
        ("[64:ff9b::a9fe:a9fe]", CloudMetadata),
        ("[fd00:ec2::254]", CloudMetadata),
        ("100.100.100.200", CloudMetadata),
        ("169.254.0.1", LinkLocal),
        ("[fe80::1]", LinkLocal),
        ("[fc00::1]", Private),
        ("[fd12:3456:789a::1]", Private),
        ("[::ffff:10.0.0.1]", Private),
        ("100.64.0.1", SharedNat),
        ("224.0.0.1", Multicast),
        ("[ff02::1]", Multicast),
        ("255.255.255.255", Broadcast),
        ("192.0.2.10", Documentation),
        ("[2001:db8::1]", Documentation),
        ("240.0.0.1", Reserved),
        ("[::127.0.0.1]", Reserved),
        ("[2002:a9fe:a9fe::1]", Reserved),
    ] {
        let url = format!("http://{host}/latest/meta-data/");
        let result = get_all(&fetcher, &url).await;
        assert_eq!(forbidden_class(result), expected, "{url}");
        let https = get_all(&fetcher, &format!("https://{host}/")).await;
        assert_eq!(forbidden_class(https), expected, "https {host}");
    }
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    let server = server(|path| match path {
        "/metadata" => redirect("http://169.254.169.254/latest/meta-data/iam/"),
        "/mapped" => redirect("http://[::ffff:a9fe:a9fe]/"),
        "/private" => redirect("http://10.1.2.3:8080/admin"),
        "/file" => redirect("file:///etc/passwd"),
        "/credentials" => redirect("http://user:secret@example.com/"),
        "/garbage" => redirect("http://[::1"),
        "/relative" => redirect("/final"),
        "/final" => ok(b"arrived"),
        _ => status(404, "Not Found"),
    })
    .await;
    let fetcher = fetcher(loopback_policy());

    let class = |path: &'static str| {
        let fetcher = fetcher.clone();
        let url = server.url(path);
        async move { forbidden_class(get_all(&fetcher, &url).await) }
    };
    assert_eq!(class("/metadata").await, AddressClass::CloudMetadata);
    assert_eq!(class("/mapped").await, AddressClass::CloudMetadata);
    assert_eq!(class("/private").await, AddressClass::Private);
    assert!(matches!(
        get_all(&fetcher, &server.url("/file")).await,
        Err(FetchError::Scheme { .. })
    ));
    assert!(matches!(
        get_all(&fetcher, &server.url("/credentials")).await,
        Err(FetchError::Credentials)
    ));
    assert!(matches!(
        get_all(&fetcher, &server.url("/garbage")).await,
        Err(FetchError::BadRedirect { .. })
    ));

    let download = bounded(fetcher.get(&server.url("/relative")))
        .await
        .unwrap();
    assert_eq!(download.final_url(), server.url("/final"));
    assert_eq!(bounded(body(download)).await.unwrap(), b"arrived");
}

#[tokio::test]
async fn redirects_are_limited() {
    let server = server(|path| {
        let n: u32 = path.trim_start_matches("/r/").parse().unwrap_or(0);
        if n >= 3 {
            ok(b"done")
        } else {
            redirect(&format!("/r/{}", n + 1))
        }
    })
    .await;
    let three = fetcher(FetchPolicy {
        max_redirects: 3,
        ..loopback_policy()
    });
    assert_eq!(get_all(&three, &server.url("/r/0")).await.unwrap(), b"done");

    let two = fetcher(FetchPolicy {
        max_redirects: 2,
        ..loopback_policy()
    });
    let error = get_all(&two, &server.url("/r/0")).await.unwrap_err();
    assert_eq!(error, FetchError::TooManyRedirects { limit: 2 });
    assert!(!error.is_retryable());

    let none = fetcher(FetchPolicy {
        max_redirects: 0,
        ..loopback_policy()
    });
    let error = get_all(&none, &server.url("/r/2")).await.unwrap_err();
    assert_eq!(error, FetchError::TooManyRedirects { limit: 0 });
}

#[tokio::test]
async fn only_http_and_https_without_credentials_or_foreign_ports() {
    let fetcher = fetcher(loopback_policy());
    for url in [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://example.com/",
        "data:text/plain,hello",
        "javascript:alert(1)",
        "ws://example.com/",
    ] {
        let error = get_all(&fetcher, url).await.unwrap_err();
        assert!(
            matches!(error, FetchError::Scheme { .. }),
            "{url}: {error:?}"
        );
        assert!(error.to_string().contains("only http and https"));
        assert!(!error.is_retryable());
    }
    for url in [
        "http://user@example.com/",
        "http://user:pass@example.com/",
        "https://:pass@example.com/",
        "http://example.com@127.0.0.1/",
    ] {
        let error = get_all(&fetcher, url).await.unwrap_err();
        assert_eq!(error, FetchError::Credentials, "{url}");
    }
    for (url, port) in [
        ("http://127.0.0.1:25/", 25),
        ("https://example.com:22/", 22),
        ("http://example.com:0/", 0),
    ] {
        let error = get_all(&fetcher, url).await.unwrap_err();
        assert_eq!(error, FetchError::Port { port }, "{url}");
    }
    for url in [
        "not a url",
        "http://",
        "http://[::1/",
        "http://exa mple.com/",
        "",
    ] {
        let error = get_all(&fetcher, url).await.unwrap_err();
        assert!(
            matches!(error, FetchError::InvalidUrl { .. }),
            "{url}: {error:?}"
        );
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn size_limit_from_the_header_and_while_streaming() {
    let big = vec![b'x'; 10_000];
    let served = big.clone();
    let server = server(move |path| match path {
        "/announced" => ok(&served),
        "/chunked" => chunked(&served),
        _ => ok(&served[..100]),
    })
    .await;
    let fetcher = fetcher(FetchPolicy {
        max_bytes: 1000,
        ..loopback_policy()
    });

    let error = bounded(fetcher.get(&server.url("/announced")))
        .await
        .unwrap_err();
    assert_eq!(error, FetchError::TooLarge { limit: 1000 });
    assert_eq!(
        error.to_string(),
        "the file is larger than the limit of 1000 bytes"
    );
    assert!(!error.is_retryable());

    let download = bounded(fetcher.get(&server.url("/chunked"))).await.unwrap();
    let error = bounded(body(download)).await.unwrap_err();
    assert_eq!(error, FetchError::TooLarge { limit: 1000 });

    assert_eq!(
        get_all(&fetcher, &server.url("/small"))
            .await
            .unwrap()
            .len(),
        100
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = server(|path| match path {
        "/silent" => Answer::Stall(Vec::new()),
        _ => {
            Answer::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly the start".to_vec())
        }
    })
    .await;
    let limit = Duration::from_secs(2);
    let fetcher = fetcher(FetchPolicy {
        timeout: limit,
        ..loopback_policy()
    });

    let error = bounded(fetcher.get(&server.url("/silent")))
        .await
        .unwrap_err();
    assert_eq!(error, FetchError::Timeout { limit });
    assert!(error.is_retryable());
    assert!(
        error.to_string().contains("within the limit of 2 s"),
        "{error}"
    );

    let mut download = bounded(fetcher.get(&server.url("/stalls-in-body")))
        .await
        .unwrap();
    assert_eq!(
        &bounded(download.chunk()).await.unwrap().unwrap()[..],
        b"only the start"
    );
    let error = bounded(download.chunk()).await.unwrap().unwrap_err();
    assert_eq!(error, FetchError::Timeout { limit });
    assert!(bounded(download.chunk()).await.is_none());
}

#[tokio::test]
async fn http_errors_say_whether_a_retry_can_help() {
    let server = server(|path| match path {
        "/missing" => status(404, "Not Found"),
        "/busy" => status(503, "Service Unavailable"),
        "/slow-down" => status(429, "Too Many Requests"),
        "/cut" => Answer::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()),
        _ => Answer::Bytes(b"this is not HTTP\r\n\r\n".to_vec()),
    })
    .await;
    let fetcher = fetcher(loopback_policy());

    let missing = get_all(&fetcher, &server.url("/missing"))
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "the server answered 404 Not Found");
    assert!(!missing.is_retryable());
    assert!(
        get_all(&fetcher, &server.url("/busy"))
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert!(
        get_all(&fetcher, &server.url("/slow-down"))
            .await
            .unwrap_err()
            .is_retryable()
    );

    let cut = get_all(&fetcher, &server.url("/cut")).await.unwrap_err();
    assert!(matches!(cut, FetchError::Http { .. }), "{cut:?}");
    assert!(cut.is_retryable());

    let garbage = get_all(&fetcher, &server.url("/garbage"))
        .await
        .unwrap_err();
    assert!(matches!(garbage, FetchError::Http { .. }), "{garbage:?}");

    // Nothing listens on this port any more.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = get_all(&fetcher, &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(matches!(refused, FetchError::Connect { .. }), "{refused:?}");
    assert!(refused.is_retryable());
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, made for this test only (its
/// key protects nothing). No public authority signed it, so the fetcher must refuse it.
const TEST_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUOkdDepSf8c/7gEDZtzJVFcsqgNwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyOTAyMDkyOVoYDzIxMjYxMTA1
MDIwOTI5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAATlCJt/EseKfzGDZuEJtwdjsd2301oWRpDZWadyhnNb9uFLXoYxq6Ei
F0BjiFy7mCXFjN+rwX3PaVYKBtbgkxheo28wbTAdBgNVHQ4EFgQUAYUQPzjWXwOf
MbH5cYdbgKlYr5IwHwYDVR0jBBgwFoAUAYUQPzjWXwOfMbH5cYdbgKlYr5IwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDRwAwRAIgeTP7XbdxHlpc4omMIa5hsuwsM0FVM1CCwwfR2GAf1pgCIAfl
oSwE4VQ+X1vZyHztcesua2j3vZNZt+CKXjtC+b07
-----END CERTIFICATE-----
";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgj631FnQQ+32I3/j8
NwI8bS7qRvZuF2QRlLvppfGeB9ahRANCAATlCJt/EseKfzGDZuEJtwdjsd2301oW
RpDZWadyhnNb9uFLXoYxq6EiF0BjiFy7mCXFjN+rwX3PaVYKBtbgkxhe
-----END PRIVATE KEY-----
";

#[tokio::test]
async fn https_verifies_the_server_certificate() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certificate = CertificateDer::from_pem_slice(TEST_CERTIFICATE.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(socket).await {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                        .await;
                }
            });
        }
    });

    let fetcher = fetcher(loopback_policy());
    for host in ["localhost", "127.0.0.1"] {
        let error = get_all(&fetcher, &format!("https://{host}:{port}/"))
            .await
            .unwrap_err();
        match &error {
            FetchError::Tls {
                cause, permanent, ..
            } => {
                assert!(cause.contains("certificate"), "{error}");
                assert!(permanent);
                assert!(!error.is_retryable());
            }
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dropped_download_closes_its_connection() {
    let server = server(|_| {
        Answer::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nsome".to_vec())
    })
    .await;
    let fetcher = fetcher(loopback_policy());
    let mut download = bounded(fetcher.get(&server.url("/"))).await.unwrap();
    assert!(bounded(download.chunk()).await.unwrap().is_ok());
    assert_eq!(server.closed.load(Ordering::SeqCst), 0);
    drop(download);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while server.closed.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection stayed open after the download was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections(), 1);
}
