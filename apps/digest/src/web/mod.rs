//! The `web` process: pages, the JSON API, the health check and the embedded assets, with
//! sessions in the store `SESSION_URL` names (through shoal-kit), on `$PORT`.
//!
//! Nothing is kept in memory or on disk between requests: the user is in the session store,
//! jobs and reports in the database, and an upload lives in a scratch directory only for the
//! request that receives it.
//!
//! - `pages`, `api`: the handlers; `upload`: a multipart upload through the pipeline.
//! - `auth`: accounts and the signed-in user; `hashing`: the gate in front of password hashes;
//!   `csrf`: form tokens and the API header rule.
//! - `html`: escaping and the layout; `assets`: the build-time assets; `error`: responses.

mod api;
mod assets;
mod auth;
mod csrf;
mod error;
mod hashing;
mod html;
mod pages;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shoal_kit::{SessionConfig, SessionLayer, SessionStore, StoreOptions};

use crate::config::Config;
use crate::db::{Db, schema};
use crate::intake;
use error::AppError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub(crate) db: Db,
    pub(crate) config: Arc<Config>,
    pub(crate) hashing: Arc<hashing::Hashing>,
    /// The bound on uploads digested at once.
    pub(crate) uploads: Arc<intake::Pipelines>,
}

impl AppState {
    /// The state of a web process using `db`, configured by `config`.
    pub fn new(db: Db, config: Config) -> AppState {
        AppState {
            db,
            hashing: hashing::Hashing::new(config.hash_concurrency, config.hash_wait),
            uploads: Arc::new(intake::Pipelines::new(
                config.upload_concurrency,
                config.upload_wait,
            )),
            config: Arc::new(config),
        }
    }

    /// The most password hashes that have run at once in this process (for tests).
    #[doc(hidden)]
    pub fn hashes_peak(&self) -> usize {
        self.hashing.peak()
    }

    /// How many uploads this process is digesting now (for tests).
    #[doc(hidden)]
    pub fn uploads_running(&self) -> usize {
        self.uploads.running()
    }
}

/// The session table (SQL stores) or key prefix (Redis, Memcached) of digest's sessions.
pub const SESSION_NAMESPACE: &str = "digest_sessions";

/// Form posts and JSON bodies are small; uploads have their own limit.
const BODY_LIMIT: usize = 64 * 1024;

/// The whole app as a router (tests drive it in-process).
pub fn app(state: AppState, sessions: SessionStore) -> Router {
    let api = Router::new()
        .route("/signup", post(api::signup))
        .route("/signin", post(api::signin))
        .route("/signout", post(api::signout))
        .route("/me", get(api::me))
        .route("/jobs", get(api::list).post(api::submit_url))
        .route("/jobs/{id}", get(api::job))
        .route(
            "/uploads",
            post(api::upload)
                .layer(DefaultBodyLimit::disable())
                .layer(middleware::from_fn(upload::meter)),
        )
        .layer(middleware::from_fn(csrf::require_api_header));
    let dynamic = Router::new()
        .route("/", get(pages::home))
        .route("/signup", get(pages::signup_form).post(pages::signup))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/files", get(pages::files))
        .route("/files/url", post(pages::submit_url))
        .route(
            "/files/upload",
            post(pages::upload)
                .layer(DefaultBodyLimit::disable())
                .layer(middleware::from_fn(upload::meter)),
        )
        .route("/jobs/{id}", get(pages::job))
        .nest("/api", api)
        .layer(SessionLayer::new(
            sessions,
            SessionConfig::default().with_cookie_name("digest_session"),
        ));
    Router::new()
        .route("/healthz", get(health))
        .route("/assets/{file}", get(assets::serve))
        .merge(dynamic)
        .fallback(|| async { AppError::NotFound })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Runs the web process until SIGTERM/SIGINT, then finishes the requests in flight (for at
/// most `GRACE`).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    const GRACE: Duration = Duration::from_secs(8);
    let db = Db::connect(&config.database).await?;
    schema::migrate(&db)
        .await
        .context("cannot bring the database schema up to date")?;
    let sessions = SessionStore::connect(
        &config.session_url,
        StoreOptions::default().with_namespace(SESSION_NAMESPACE),
    )
    .await?;
    let listener = shoal_kit::listen(5000).await?;
    let addr = listener.local_addr().context("listening socket")?;
    eprintln!(
        "digest web {}: listening on {addr}, database `{}`",
        config.instance,
        config.database.masked()
    );
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shoal_kit::shutdown_signal().await;
            stopping.notify_one();
        }
    };
    let server = axum::serve(listener, app(AppState::new(db.clone(), config), sessions))
        .with_graceful_shutdown(signal);
    tokio::select! {
        result = server => result.context("serving HTTP")?,
        () = async { stopping.notified().await; tokio::time::sleep(GRACE).await } => {
            eprintln!("digest web: requests still running after {GRACE:?}; stopping anyway");
        }
    }
    db.close().await;
    Ok(())
}

/// `GET /healthz`: 200 when the database answers (shoal's `--health-path`).
async fn health(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            AppError::internal("health check", &e);
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Headers on every response: no inline script or style, no framing, no MIME sniffing.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The longest URL accepted.
const MAX_URL: usize = 2048;

/// A submitted URL, trimmed, or why it is refused. Only the shape is checked here; the
/// worker's fetcher checks the addresses it resolves to when it connects.
pub(crate) fn check_url(raw: &str) -> Result<String, AppError> {
    let url = raw.trim();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(AppError::BadRequest(
            "only http:// and https:// URLs can be digested".to_owned(),
        ));
    }
    if url.len() > MAX_URL || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AppError::BadRequest(format!(
            "a URL has at most {MAX_URL} characters and no spaces"
        )));
    }
    Ok(url.to_owned())
}
