//! [`SessionStore`]: the one front the layer talks to, picking a backend from a URL.
//!
//! Every backend offers the same four operations, and the no-lost-update guarantee rests on
//! their contract:
//! - `load(id)`: the record and its version, or `None` when absent or expired;
//! - `create(id, record)`: store only if `id` is absent (`false` otherwise);
//! - `replace(id, version, record)`: store only if the stored version is still `version`
//!   (`false` when it changed **or the record is gone** — a replace never re-creates);
//! - `delete(id)`: remove unconditionally (logout, and a copy nobody has seen yet);
//! - `delete_if(id, version)`: remove only if the stored version is still `version` (`false`
//!   when it changed or the record is gone): `cycle()` retires the old id with it, so a change
//!   saved after the cycle copied the data makes it copy again instead of being lost.
//!
//! Every operation is bounded by [`StoreOptions::with_timeout`], so a dead store is an error,
//! never a hang.

mod memcached;
mod redis;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConnectError, StoreError};
use crate::record::Record;

/// A record as loaded, with the version a later `replace` must present.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) version: u64,
    pub(crate) record: Record,
}

/// Settings of a store connection.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub(crate) namespace: String,
    pub(crate) timeout: Duration,
    pub(crate) cleanup_interval: Duration,
}

impl Default for StoreOptions {
    /// Namespace `shoal_sessions`, 5 s per operation, SQL cleanup every 60 s.
    fn default() -> Self {
        StoreOptions {
            namespace: "shoal_sessions".to_owned(),
            timeout: Duration::from_secs(5),
            cleanup_interval: Duration::from_secs(60),
        }
    }
}

impl StoreOptions {
    /// The table name (SQL) or key prefix `NAMESPACE:` (Redis, Memcached). Several apps, or
    /// tests, can share one server with different namespaces.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The longest a single store operation (including connecting) may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often SQL stores delete expired rows (they are never served in the meantime).
    pub fn with_cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = interval.max(Duration::from_millis(10));
        self
    }

    fn validate(&self) -> Result<(), ConnectError> {
        let ns = &self.namespace;
        let ok = (1..=63).contains(&ns.len())
            && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !ns.as_bytes()[0].is_ascii_digit();
        if ok {
            Ok(())
        } else {
            Err(ConnectError::InvalidNamespace(ns.clone()))
        }
    }
}

/// A connection (pool) to the store that keeps the sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    backend: Arc<Backend>,
    timeout: Duration,
}

enum Backend {
    Redis(redis::RedisStore),
    Memcached(memcached::MemcachedStore),
    Sql(sql::SqlStore),
}

const EXPECTED_URL: &str =
    "`redis://HOST[:PORT][/DB]`, `memcache://HOST[:PORT]`, `postgres://…` or `sqlite://PATH`";

impl SessionStore {
    /// Connects to the store named by `url` and checks that it answers (and, for SQL, that the
    /// session table exists, creating it when missing).
    pub async fn connect(url: &str, options: StoreOptions) -> Result<SessionStore, ConnectError> {
        options.validate()?;
        let masked = mask_url(url);
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let unreachable = |source| ConnectError::Unreachable {
            url: masked.clone(),
            source,
        };
        let invalid = || ConnectError::InvalidUrl {
            url: masked.clone(),
            expected: EXPECTED_URL,
        };
        let backend = match scheme.as_deref() {
            Some("redis" | "valkey") => {
                let client = ::redis::Client::open(url).map_err(|_| invalid())?;
                Backend::Redis(
                    redis::RedisStore::connect(client, &options)
                        .await
                        .map_err(unreachable)?,
                )
            }
            Some("memcache" | "memcached") => {
                let addr = memcached::address(url).ok_or_else(invalid)?;
                Backend::Memcached(
                    memcached::MemcachedStore::connect(addr, &options)
                        .await
                        .map_err(unreachable)?,
                )
            }
            Some("postgres" | "postgresql" | "sqlite") => Backend::Sql(
                sql::SqlStore::connect(url, &options)
                    .await
                    .map_err(|e| match e {
                        sql::ConnectFailure::Invalid => invalid(),
                        sql::ConnectFailure::Store(e) => unreachable(e),
                    })?,
            ),
            _ => return Err(invalid()),
        };
        Ok(SessionStore {
            backend: Arc::new(backend),
            timeout: options.timeout,
        })
    }

    /// Connects to `SESSION_URL`, or to `default_url` when it is unset (typically
    /// `sqlite:///absolute/path/sessions.db` for development).
    pub async fn from_env(
        default_url: &str,
        options: StoreOptions,
    ) -> Result<SessionStore, ConnectError> {
        let url = std::env::var("SESSION_URL").ok().filter(|u| !u.is_empty());
        SessionStore::connect(url.as_deref().unwrap_or(default_url), options).await
    }

    /// The stored version of session `id` (`None` when absent or expired): lets tests and
    /// diagnostics see whether a request wrote. Not a stable interface.
    #[doc(hidden)]
    pub async fn stored_version(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.load(id).await?.map(|l| l.version))
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let loaded = self
            .bounded(async {
                match &*self.backend {
                    Backend::Redis(s) => s.load(id).await,
                    Backend::Memcached(s) => s.load(id).await,
                    Backend::Sql(s) => s.load(id).await,
                }
            })
            .await?;
        Ok(loaded)
    }

    pub(crate) async fn create(
        &self,
        id: &str,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Redis(s) => s.create(id, record, ttl).await,
                Backend::Memcached(s) => s.create(id, record, ttl).await,
                Backend::Sql(s) => s.create(id, record, ttl).await,
            }
        })
        .await
    }

    pub(crate) async fn replace(
        &self,
        id: &str,
        version: u64,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Redis(s) => s.replace(id, version, record, ttl).await,
                Backend::Memcached(s) => s.replace(id, version, record, ttl).await,
                Backend::Sql(s) => s.replace(id, version, record, ttl).await,
            }
        })
        .await
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Redis(s) => s.delete(id).await,
                Backend::Memcached(s) => s.delete(id).await,
                Backend::Sql(s) => s.delete(id).await,
            }
        })
        .await
    }

    pub(crate) async fn delete_if(&self, id: &str, version: u64) -> Result<bool, StoreError> {
        self.bounded(async {
            match &*self.backend {
                Backend::Redis(s) => s.delete_if(id, version).await,
                Backend::Memcached(s) => s.delete_if(id, version).await,
                Backend::Sql(s) => s.delete_if(id, version).await,
            }
        })
        .await
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, op)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memcached(_) => "memcached",
            Backend::Sql(_) => "sql",
        };
        f.debug_struct("SessionStore")
            .field("backend", &kind)
            .finish_non_exhaustive()
    }
}

/// `url` with the password replaced by `****`, for messages and logs (the same masking
/// `shoal check` applies to the values it shows).
pub fn mask_url(url: &str) -> String {
    shoal_procfile::secret::mask_url_password(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            mask_url("redis://:s3cr@t@h:6379/0"),
            "redis://:****@h:6379/0"
        );
        assert_eq!(
            mask_url("postgres://app:pw@db/app?x=1"),
            "postgres://app:****@db/app?x=1"
        );
        assert_eq!(mask_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(mask_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }
}
