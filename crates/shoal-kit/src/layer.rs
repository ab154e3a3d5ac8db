//! The tower layer: loads the session named by the cookie before the handler and saves the
//! handler's changes after it. The save is where "no lost updates" is kept:
//!
//! 1. Nothing changed (and the idle timer needs no refresh): no store write at all.
//! 2. Changed: `replace(id, loaded_version, loaded_data + changes)`. If another process wrote
//!    first, the version differs and the replace is refused; the layer reloads the newest
//!    record and replays **only this request's changes** onto it, and tries again (bounded,
//!    with jittered backoff). Keys changed by the other request are kept.
//! 3. The record is gone (logout elsewhere, expiry): a replace never re-creates it, so a slow
//!    request cannot resurrect a deleted session; the client is told to drop the cookie.
//! 4. `cycle()`: the newest data with the changes goes to a new id, and the old id is deleted
//!    only if it still has the version that was copied; otherwise the copy is dropped and the
//!    cycle starts again from the newer data (bounded like 2), so a save of the old id that
//!    landed in between is carried over, and a logout in between stays a logout.
//!
//! A store failure becomes `503 Service Unavailable` (detail on stderr), never a panic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::SET_COOKIE;
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::config::SessionConfig;
use crate::error::{StoreError, log_error};
use crate::record::{Changes, Record, now_ms};
use crate::session::{Session, State};
use crate::store::SessionStore;
use crate::{cookie, id};

/// Compare-and-set attempts before a save gives up with [`StoreError::Contention`].
const MAX_ATTEMPTS: u32 = 32;

/// Adds a [`Session`] to every request. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

#[derive(Debug, Clone)]
struct Shared {
    store: SessionStore,
    config: SessionConfig,
    cookie_name: String,
    cycle_hook: Option<CycleHook>,
}

/// What [`SessionLayer::with_cycle_hook`] runs.
#[derive(Clone)]
struct CycleHook(Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>);

impl std::fmt::Debug for CycleHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CycleHook")
    }
}

impl SessionLayer {
    /// Sessions kept in `store`, expiring and looking as `config` says.
    ///
    /// # Panics
    /// When the configured cookie name is empty or not an RFC 6265 token (a programming error,
    /// caught at startup rather than on every response).
    pub fn new(store: SessionStore, config: SessionConfig) -> SessionLayer {
        let cookie_name = config.cookie_name();
        assert!(
            cookie::is_valid_name(&config.cookie_name),
            "session cookie name `{}` is not valid: expected letters, digits and `!#$%&'*+-.^_`|~`",
            config.cookie_name
        );
        SessionLayer {
            shared: Arc::new(Shared {
                store,
                config,
                cookie_name,
                cycle_hook: None,
            }),
        }
    }

    /// Runs `hook` in every save of a [`Session::cycle`], after the new id is stored and before
    /// the old one is retired, so that a test can change the old session at exactly that
    /// moment. Not a stable interface.
    #[doc(hidden)]
    pub fn with_cycle_hook<F, Fut>(mut self, hook: F) -> SessionLayer
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Arc::make_mut(&mut self.shared).cycle_hook =
            Some(CycleHook(Arc::new(move || Box::pin(hook()))));
        self
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an app.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for SessionService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    ReqB: Send + 'static,
    ResB: From<&'static str> + Send,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let shared = self.shared.clone();
        // The clone may not be ready; the instance `poll_ready` was called on is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let https = cookie::is_https(req.headers(), req.uri());
            let session =
                match load(&shared, cookie::find(req.headers(), &shared.cookie_name)).await {
                    Ok(session) => session,
                    Err(e) => return Ok(unavailable(&e)),
                };
            req.extensions_mut().insert(session.clone());
            let mut response = inner.call(req).await?;
            match save(&shared, session.take_state()).await {
                Ok(Some(set_cookie)) => {
                    let value =
                        HeaderValue::from_str(&cookie::render(&shared.config, &set_cookie, https))
                            .expect("cookie names and ids are header-safe");
                    response.headers_mut().append(SET_COOKIE, value);
                }
                Ok(None) => {}
                Err(e) => return Ok(unavailable(&e)),
            }
            Ok(response)
        })
    }
}

/// What the client's cookie must become.
pub(crate) enum SetCookie {
    Issue(String),
    Remove,
}

async fn load(shared: &Shared, cookie: Option<String>) -> Result<Session, StoreError> {
    let Some(id) = cookie else {
        return Ok(Session::new(None, false));
    };
    // Strict mode: an id this crate could not have issued, or one the store does not know,
    // is never adopted; a fresh id is made if the request stores anything.
    if !id::is_well_formed(&id) {
        return Ok(Session::new(None, true));
    }
    match shared.store.load(&id).await? {
        Some(loaded) if loaded.record.ttl(&shared.config, now_ms()).is_some() => {
            Ok(Session::new(Some((id, loaded)), false))
        }
        _ => Ok(Session::new(None, true)),
    }
}

async fn save(shared: &Shared, state: State) -> Result<Option<SetCookie>, StoreError> {
    let store = &shared.store;
    let config = &shared.config;
    let forget = || {
        if state.unknown_id || state.loaded.is_some() {
            Some(SetCookie::Remove)
        } else {
            None
        }
    };
    if state.delete {
        if let Some((id, _)) = &state.loaded {
            store.delete(id).await?;
        }
        return Ok(forget());
    }
    let Some((id, loaded)) = &state.loaded else {
        if state.view.is_empty() {
            return Ok(forget());
        }
        let now = now_ms();
        let id = create(shared, &Record::new(now, state.view)).await?;
        return Ok(Some(SetCookie::Issue(id)));
    };
    if state.cycle {
        return cycle(shared, id, &state.changes).await;
    }
    let touch_only = state.changes.is_empty();
    if touch_only && !loaded.record.wants_touch(config, now_ms()) {
        return Ok(None);
    }
    let (mut version, mut created_ms) = (loaded.version, loaded.record.created_ms);
    // First attempt: the loaded data with this request's changes is exactly what the handler
    // saw. Later attempts replay the changes onto the newest stored data.
    let mut first = Some(state.view);
    let mut newest = serde_json::Map::new();
    for attempt in 0..MAX_ATTEMPTS {
        let now = now_ms();
        let data = first.take().unwrap_or_else(|| state.changes.apply(&newest));
        let record = Record {
            created_ms,
            touched_ms: now,
            data,
        };
        let Some(ttl) = record.ttl(config, now) else {
            store.delete(id).await?;
            return Ok(Some(SetCookie::Remove));
        };
        if store.replace(id, version, &record, ttl).await? {
            return Ok(None);
        }
        if touch_only {
            // Someone else wrote in between, and every write refreshes the idle timer.
            return Ok(None);
        }
        let Some(newer) = store.load(id).await? else {
            return Ok(Some(SetCookie::Remove));
        };
        (version, created_ms, newest) = (newer.version, newer.record.created_ms, newer.record.data);
        if attempt >= 2 {
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    Err(StoreError::Contention(MAX_ATTEMPTS))
}

/// Moves the session to a new id: copies the newest stored data with this request's changes to
/// a fresh id, then retires the old id only if it is still the version that was copied. A save
/// of the old id that landed in between makes that fail: the copy is deleted (nobody has seen
/// its id) and the cycle starts again from the newer data, so the save is not lost; a logout in
/// between leaves nothing to copy, and the client is told to forget the cookie.
async fn cycle(
    shared: &Shared,
    old_id: &str,
    changes: &Changes,
) -> Result<Option<SetCookie>, StoreError> {
    let store = &shared.store;
    for attempt in 0..MAX_ATTEMPTS {
        let Some(latest) = store.load(old_id).await? else {
            return Ok(Some(SetCookie::Remove));
        };
        let record = Record {
            created_ms: latest.record.created_ms,
            touched_ms: now_ms(),
            data: changes.apply(&latest.record.data),
        };
        let new_id = create(shared, &record).await?;
        if let Some(hook) = &shared.cycle_hook {
            (hook.0)().await;
        }
        if store.delete_if(old_id, latest.version).await? {
            return Ok(Some(SetCookie::Issue(new_id)));
        }
        store.delete(&new_id).await?;
        if attempt >= 2 {
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    Err(StoreError::Contention(MAX_ATTEMPTS))
}

/// Stores `record` under a fresh id (a collision of 256 random bits is not expected, but
/// `create` never overwrites, so one is simply retried).
async fn create(shared: &Shared, record: &Record) -> Result<String, StoreError> {
    loop {
        let id = id::generate()?;
        let ttl = record
            .ttl(&shared.config, now_ms())
            .unwrap_or(Duration::from_millis(1));
        if shared.store.create(&id, record, ttl).await? {
            return Ok(id);
        }
    }
}

/// Random delay of up to 2^attempt ms (capped at 64 ms): spreads out the retries of requests
/// that keep colliding.
fn backoff(attempt: u32) -> Duration {
    let cap = 1u64 << attempt.min(6);
    let mut b = [0u8; 8];
    let jitter = getrandom::fill(&mut b).map_or(cap / 2, |()| u64::from_le_bytes(b) % cap);
    Duration::from_millis(jitter + 1)
}

fn unavailable<B: From<&'static str>>(err: &StoreError) -> Response<B> {
    log_error("session store unavailable", err);
    let mut response = Response::new(B::from("session store unavailable\n"));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
