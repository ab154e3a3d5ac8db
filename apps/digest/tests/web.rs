//! The web app in-process (no sockets): CSRF protection on every form and on the API,
//! security headers, escaping, and the assets' cache headers.

mod support;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use tower::ServiceExt;

use digest_app::config::Config;
use digest_app::db::{Db, schema};
use digest_app::web::{self, AppState};
use shoal_kit::{SessionStore, StoreOptions};

struct App {
    router: Router,
    state: AppState,
    cookie: Option<String>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl App {
    async fn new() -> App {
        App::with(&[]).await
    }

    /// The app with `vars` set in its configuration besides its data directory.
    async fn with(vars: &[(&str, &str)]) -> App {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_owned();
        let config = Config::from_lookup(|k| {
            if k == "XDG_DATA_HOME" {
                return Some(data.clone());
            }
            vars.iter()
                .find(|(var, _)| *var == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        let db = Db::connect(&config.database).await.unwrap();
        schema::migrate(&db).await.unwrap();
        let sessions = SessionStore::connect(
            &config.session_url,
            StoreOptions::default().with_namespace(web::SESSION_NAMESPACE),
        )
        .await
        .unwrap();
        let state = AppState::new(db, config);
        App {
            router: web::app(state.clone(), sessions),
            state,
            cookie: None,
            _dir: dir,
        }
    }

    async fn send(&mut self, request: http::request::Builder, body: Body) -> Reply {
        let request = match &self.cookie {
            Some(c) => request.header("cookie", c.as_str()),
            None => request,
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        for value in response.headers().get_all("set-cookie") {
            let pair = value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(path), Body::empty()).await
    }

    async fn form(&mut self, path: &str, body: &str) -> Reply {
        self.send(
            Request::post(path).header("content-type", "application/x-www-form-urlencoded"),
            Body::from(body.to_owned()),
        )
        .await
    }

    async fn api(&mut self, path: &str, header: bool, json: &str) -> Reply {
        let mut request = Request::post(path).header("content-type", "application/json");
        if header {
            request = request.header("x-requested-with", "test");
        }
        self.send(request, Body::from(json.to_owned())).await
    }
}

fn csrf_of(page: &str) -> String {
    support::http::csrf_field(page)
}

#[tokio::test]
async fn every_form_needs_the_sessions_token() {
    let mut app = App::new().await;
    // Without a session there is no token to present.
    let r = app
        .form("/signup", "username=ada&password=correct-horse")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    let page = app.get("/signup").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf_of(&page.body);
    assert_eq!(token.len(), 64);
    for body in [
        "username=ada&password=correct-horse".to_owned(),
        "username=ada&password=correct-horse&csrf=".to_owned(),
        format!(
            "username=ada&password=correct-horse&csrf={}",
            "0".repeat(64)
        ),
        format!("username=ada&password=correct-horse&csrf={}", &token[..63]),
    ] {
        let r = app.form("/signup", &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", r.body);
    }
    let r = app
        .form(
            "/signup",
            &format!("username=ada&password=correct-horse&csrf={token}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], "/files");

    // Signing up signed in, under a new token.
    let files = app.get("/files").await;
    assert_eq!(files.status, StatusCode::OK);
    let fresh = csrf_of(&files.body);
    assert_ne!(fresh, token, "signing in renews the token");
    for (path, fields) in [
        ("/files/url", "url=https%3A%2F%2Fexample.com%2Fa"),
        ("/signout", ""),
    ] {
        let r = app.form(path, &format!("{fields}&csrf={token}")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with the old token");
        let r = app.form(path, fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} without a token");
    }
    // The upload form: the token must come before the file.
    let boundary = "b0undary";
    let multipart = |csrf: Option<&str>| {
        let mut body = String::new();
        if let Some(c) = csrf {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{c}\r\n"
            ));
        }
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\n\r\n--{boundary}--\r\n"
        ));
        body
    };
    for csrf in [None, Some("nope"), Some(token.as_str())] {
        let r = app
            .send(
                Request::post("/files/upload").header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                ),
                Body::from(multipart(csrf)),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "upload with {csrf:?}");
    }
    let r = app
        .send(
            Request::post("/files/upload").header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            ),
            Body::from(multipart(Some(&fresh))),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let job_page = app.get(r.headers["location"].to_str().unwrap()).await;
    assert!(
        job_page.body.contains(&format!(
            r#"id="report-sha256">{}<"#,
            support::sha256_hex(b"hello\n")
        )),
        "{}",
        job_page.body
    );

    let r = app.form("/signout", &format!("csrf={fresh}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(app.get("/files").await.headers["location"], "/signin");
}

#[tokio::test]
async fn api_writes_need_the_custom_header() {
    let mut app = App::new().await;
    let creds = r#"{"username":"bob","password":"correct-horse"}"#;
    let r = app.api("/api/signup", false, creds).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("X-Requested-With"), "{}", r.body);
    let r = app.api("/api/signup", true, "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.starts_with(r#"{"error":"#), "{}", r.body);
    let r = app.api("/api/signup", true, creds).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.api("/api/signup", true, creds).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = app
        .api("/api/jobs", false, r#"{"url":"https://example.com/"}"#)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .api("/api/jobs", true, r#"{"url":"file:///etc/passwd"}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = app
        .api("/api/jobs", true, r#"{"url":"https://example.com/"}"#)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let r = app.api("/api/signout", false, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.api("/api/signout", true, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/jobs").await.status, StatusCode::UNAUTHORIZED);
    let r = app
        .api(
            "/api/signin",
            true,
            r#"{"username":"bob","password":"wrong-horse"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .api(
            "/api/signin",
            true,
            r#"{"username":"nobody","password":"wrong-horse"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pages_escape_and_send_security_headers() {
    let mut app = App::new().await;
    let page = app.get("/signin").await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("style="), "no inline style");
    let token = csrf_of(&page.body);
    let r = app
        .form(
            "/signin",
            &format!(
                "username=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=whatever1&csrf={token}"
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.body.contains("<script>alert(1)"), "{}", r.body);
    assert!(r.body.contains("&lt;script&gt;alert(1)"), "{}", r.body);

    // The assets the page links to are served with a year-long immutable cache lifetime.
    let css = page
        .body
        .split('"')
        .find(|s| s.starts_with("/assets/app.") && s.ends_with(".css"))
        .expect("a fingerprinted stylesheet link")
        .to_owned();
    let asset = app.get(&css).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(
        asset.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        asset.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        app.get("/assets/app.0000.css").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

/// A multipart body whose field `name` never ends on its own: after `head`, `a` bytes arrive
/// in 16 KiB pieces (each one after the stream was not ready once, as from a socket) until
/// `limit` bytes were sent; then the field and the form end with a small file. `sent` counts
/// what the app pulled.
struct EndlessField {
    head: Option<bytes::Bytes>,
    tail: Option<bytes::Bytes>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
    ready: bool,
}

const BOUNDARY: &str = "b0undary";

impl EndlessField {
    fn body(name: &str, limit: usize) -> (Body, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        EndlessField::after(
            &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            limit,
        )
    }

    /// `head`, then the endless `a` bytes.
    fn after(head: &str, limit: usize) -> (Body, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let sent = std::sync::Arc::default();
        let stream = EndlessField {
            head: Some(bytes::Bytes::from(head.to_owned())),
            tail: Some(
                format!(
                    "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"a.txt\"\r\n\r\nhello\n\r\n--{BOUNDARY}--\r\n"
                )
                .into(),
            ),
            sent: std::sync::Arc::clone(&sent),
            limit,
            ready: false,
        };
        (Body::from_stream(stream), sent)
    }
}

impl futures_core::Stream for EndlessField {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::sync::atomic::Ordering;
        use std::task::Poll;
        let this = self.get_mut();
        // A parser that drains whatever is ready must see the ends of the reads it makes.
        this.ready = !this.ready;
        if !this.ready {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        const PIECE: usize = 16 * 1024;
        if this.sent.load(Ordering::SeqCst) < this.limit {
            this.sent.fetch_add(PIECE, Ordering::SeqCst);
            return Poll::Ready(Some(Ok(bytes::Bytes::from(vec![b'a'; PIECE]))));
        }
        Poll::Ready(this.tail.take().map(Ok))
    }
}

/// The upload routes lift the body limit for the file; every other field stays small. A
/// field that goes on and on (here 64 MiB, standing for gigabytes) is refused with 413 after
/// its first few KiB, before the app reads on.
#[tokio::test]
async fn upload_form_fields_other_than_the_file_are_bounded() {
    use std::sync::atomic::Ordering;
    const ENDLESS: usize = 64 << 20;
    const READ_AT_MOST: usize = 1 << 20;
    let mut app = App::new().await;
    let r = app
        .api(
            "/api/signup",
            true,
            r#"{"username":"carol","password":"correct-horse"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = csrf_of(&app.get("/files").await.body);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");

    // The form's token field, on the page's upload route.
    let (body, sent) = EndlessField::body("csrf", ENDLESS);
    let r = app
        .send(
            Request::post("/files/upload").header("content-type", &content_type),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.body.contains("`csrf`"), "{}", r.body);
    let pulled = sent.load(Ordering::SeqCst);
    assert!(pulled <= READ_AT_MOST, "read {pulled} bytes of the field");

    // A field the app does not know, on the API's upload route.
    let (body, sent) = EndlessField::body("note", ENDLESS);
    let r = app
        .send(
            Request::post("/api/uploads")
                .header("content-type", &content_type)
                .header("x-requested-with", "test"),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(r.body.starts_with(r#"{"error":"#), "{}", r.body);
    let pulled = sent.load(Ordering::SeqCst);
    assert!(pulled <= READ_AT_MOST, "read {pulled} bytes of the field");

    // A part's headers that never end (the parser keeps them whole until they do).
    let (body, sent) = EndlessField::after(
        &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\nX-Junk: "),
        ENDLESS,
    );
    let r = app
        .send(
            Request::post("/files/upload").header("content-type", &content_type),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    let pulled = sent.load(Ordering::SeqCst);
    assert!(
        pulled <= 3 * READ_AT_MOST,
        "read {pulled} bytes of the headers"
    );

    // Small fields still work: the token, then the file.
    let form = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n\
         hello\n\r\n--{BOUNDARY}--\r\n"
    );
    let r = app
        .send(
            Request::post("/files/upload").header("content-type", &content_type),
            Body::from(form),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

/// Password hashes run at most `DIGEST_HASH_CONCURRENCY` at once; a sign-in that finds no turn
/// within `DIGEST_HASH_WAIT_MS` gets 503 with `Retry-After` instead of starting another 19 MiB
/// hash. With one turn and no wait, sign-ins sent together: the one that gets the turn is
/// answered, the others are turned away (rounds are repeated until some sign-ins overlapped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashes_run_at_most_the_limit_at_once() {
    const TOGETHER: usize = 4;
    const ROUNDS: usize = 20;
    let mut app = App::with(&[
        ("DIGEST_HASH_CONCURRENCY", "1"),
        ("DIGEST_HASH_WAIT_MS", "0"),
    ])
    .await;
    let creds = r#"{"username":"dora","password":"correct-horse"}"#;
    let r = app.api("/api/signup", true, creds).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let sign_in = |router: Router, password: &'static str| async move {
        let body = format!(r#"{{"username":"dora","password":"{password}"}}"#);
        let request = Request::post("/api/signin")
            .header("content-type", "application/json")
            .header("x-requested-with", "test")
            .body(Body::from(body))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry_after)
    };
    let mut turned_away = 0;
    for round in 0..ROUNDS {
        let tasks: Vec<_> = (0..TOGETHER)
            .map(|i| {
                // A right and a wrong password both take a turn.
                let password = if i % 2 == 0 {
                    "correct-horse"
                } else {
                    "wrong-horse"
                };
                tokio::spawn(sign_in(app.router.clone(), password))
            })
            .collect();
        for task in tasks {
            let (status, retry_after) = task.await.unwrap();
            match status {
                StatusCode::OK | StatusCode::UNAUTHORIZED => assert_eq!(retry_after, None),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(retry_after.as_deref(), Some("2"), "round {round}");
                    turned_away += 1;
                }
                other => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(
            app.state.hashes_peak(),
            1,
            "round {round}: hashes ran at once"
        );
        if turned_away > 0 {
            break;
        }
    }
    assert!(
        turned_away > 0,
        "{ROUNDS} rounds of {TOGETHER} sign-ins at once: none was turned away"
    );
    // Once the flood is over, signing in works again.
    let r = app.api("/api/signin", true, creds).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// An upload's body that the test feeds: the form up to the file's data, then whatever the
/// test sends, then the form's end once the sender is dropped.
struct HeldUpload {
    parts: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    head: Option<bytes::Bytes>,
    tail: Option<bytes::Bytes>,
}

impl HeldUpload {
    fn body() -> (Body, tokio::sync::mpsc::Sender<bytes::Bytes>) {
        let (sender, parts) = tokio::sync::mpsc::channel(4);
        let upload = HeldUpload {
            parts,
            head: Some(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"held.bin\"\r\n\r\n"
                )
                .into(),
            ),
            tail: Some(format!("\r\n--{BOUNDARY}--\r\n").into()),
        };
        (Body::from_stream(upload), sender)
    }
}

impl futures_core::Stream for HeldUpload {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        match this.parts.poll_recv(cx) {
            Poll::Ready(Some(part)) => Poll::Ready(Some(Ok(part))),
            Poll::Ready(None) => Poll::Ready(this.tail.take().map(Ok)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Uploads are digested at most `DIGEST_UPLOAD_CONCURRENCY` at once (each holds a pipeline's
/// blocks, threads and scratch file): with one turn taken by an upload still arriving, another
/// one waits `DIGEST_UPLOAD_WAIT_MS` and then gets 503 with `Retry-After`; one that waits while
/// the turn comes free is digested.
#[tokio::test]
async fn uploads_are_digested_at_most_the_limit_at_once() {
    async fn upload(
        router: Router,
        cookie: String,
        body: Body,
    ) -> (StatusCode, Option<String>, String) {
        let request = Request::post("/api/uploads")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header("x-requested-with", "test")
            .header("cookie", cookie)
            .body(body)
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            retry_after,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
    fn small() -> Body {
        Body::from(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"a.txt\"\r\n\r\nhello\n\r\n--{BOUNDARY}--\r\n"
        ))
    }
    async fn running(app: &App, expected: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while app.state.uploads_running() != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 60 s for {expected} uploads to run, {} do",
                app.state.uploads_running()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    for wait_ms in ["0", "60000"] {
        let mut app = App::with(&[
            ("DIGEST_UPLOAD_CONCURRENCY", "1"),
            ("DIGEST_UPLOAD_WAIT_MS", wait_ms),
        ])
        .await;
        let r = app
            .api(
                "/api/signup",
                true,
                r#"{"username":"erin","password":"correct-horse"}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let cookie = app.cookie.clone().unwrap();

        // The first upload takes the turn and keeps it while its file arrives: 3 MiB, then
        // nothing until the test says.
        let (body, more) = HeldUpload::body();
        let first = tokio::spawn(upload(app.router.clone(), cookie.clone(), body));
        more.send(vec![7u8; 3 << 20].into()).await.unwrap();
        running(&app, 1).await;

        let second = tokio::spawn(upload(app.router.clone(), cookie.clone(), small()));
        if wait_ms == "0" {
            let (status, retry_after, body) = second.await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert_eq!(retry_after.as_deref(), Some("2"));
            assert!(body.contains("too many uploads at once"), "{body}");
            drop(more);
        } else {
            // The second upload waits for the turn (that it cannot have it while the first
            // holds it is the 503 above) and is digested once the first lets it go.
            drop(more);
            let (status, retry_after, body) = second.await.unwrap();
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(retry_after, None);
        }
        let (status, _, body) = first.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body.contains(&format!("\"size\":{}", 3 << 20)), "{body}");
        running(&app, 0).await;

        // With the turn free again, an upload is digested at once.
        let (status, _, body) = upload(app.router.clone(), cookie, small()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}
