//! [`Session`]: the handle a handler uses. It shows the loaded data with this request's
//! changes applied, and records those changes (not a copy of the whole map) so that the layer
//! can replay them onto whatever another process wrote in the meantime.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::SessionError;
use crate::record::Changes;
use crate::store::Loaded;

/// The current request's session. Cheap to clone; every clone is the same session.
///
/// Use it as an axum extractor (the [`SessionLayer`](crate::SessionLayer) must be installed).
/// Reading never writes to the store; changes are saved after the handler returns.
#[derive(Clone)]
pub struct Session(Arc<Mutex<State>>);

#[derive(Default)]
pub(crate) struct State {
    /// The stored session this request belongs to: its id, version and times (its data has
    /// been moved into `view`).
    pub(crate) loaded: Option<(String, Loaded)>,
    /// The client sent an id the store does not know (strict mode: it is never adopted).
    pub(crate) unknown_id: bool,
    /// Loaded data with `changes` applied: what the handler sees.
    pub(crate) view: Map<String, Value>,
    pub(crate) changes: Changes,
    pub(crate) cycle: bool,
    pub(crate) delete: bool,
}

impl Session {
    pub(crate) fn new(mut loaded: Option<(String, Loaded)>, unknown_id: bool) -> Session {
        let view = loaded
            .as_mut()
            .map(|(_, l)| std::mem::take(&mut l.record.data))
            .unwrap_or_default();
        Session(Arc::new(Mutex::new(State {
            loaded,
            unknown_id,
            view,
            ..State::default()
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-update leaves consistent data (every update is one
        // statement), so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn take_state(&self) -> State {
        std::mem::take(&mut *self.state())
    }

    /// The value at `key`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let Some(value) = self.state().view.get(key).cloned() else {
            return Ok(None);
        };
        serde_json::from_value(value)
            .map(Some)
            .map_err(|source| SessionError::Decode {
                key: key.to_owned(),
                source,
            })
    }

    /// Sets `key` to `value`. Setting a key to the value it already has is not a change.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = serde_json::to_value(value).map_err(|source| SessionError::Encode {
            key: key.to_owned(),
            source,
        })?;
        let mut state = self.state();
        if state.view.get(key) != Some(&value) {
            state.view.insert(key.to_owned(), value.clone());
            state.changes.keys.insert(key.to_owned(), Some(value));
        }
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut state = self.state();
        let old = state.view.remove(key);
        if old.is_some() {
            state.changes.keys.insert(key.to_owned(), None);
        }
        old
    }

    /// Removes every key (also keys another process adds concurrently before this save).
    pub fn clear(&self) {
        let mut state = self.state();
        state.view.clear();
        state.changes.cleared = true;
        state.changes.keys.clear();
    }

    /// Gives the session a new id when it is saved, keeping its data, and deletes the old id on
    /// the server. Call it on login and on any change of privilege (session fixation). A change
    /// another request saves to the old id while the new one is made is carried over; a logout
    /// in that moment wins (the client is told to forget the cookie).
    pub fn cycle(&self) {
        self.state().cycle = true;
    }

    /// Deletes the session on the server and tells the client to forget the cookie (logout).
    /// A request of the same session still running elsewhere cannot bring it back.
    pub fn delete(&self) {
        let mut state = self.state();
        state.delete = true;
        state.view.clear();
    }

    /// Whether the session has no data.
    pub fn is_empty(&self) -> bool {
        self.state().view.is_empty()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the id: it is a bearer credential.
        f.debug_struct("Session")
            .field("keys", &self.state().view.len())
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionError::MissingLayer)
    }
}
