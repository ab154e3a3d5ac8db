//! The stored session record, the change log a request builds, and the expiry arithmetic.
//!
//! A record carries its own creation and last-touch times, so every store enforces the same
//! idle timeout and absolute lifetime: the TTL it is given on each write is [`Record::ttl`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::SessionConfig;

/// One session as the stores keep it (serialised as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Creation time, unix milliseconds: the start of the absolute lifetime.
    #[serde(rename = "c")]
    pub(crate) created_ms: u64,
    /// Last write or touch, unix milliseconds: the start of the idle timeout.
    #[serde(rename = "t")]
    pub(crate) touched_ms: u64,
    #[serde(rename = "d")]
    pub(crate) data: Map<String, Value>,
}

impl Record {
    pub(crate) fn new(now_ms: u64, data: Map<String, Value>) -> Record {
        Record {
            created_ms: now_ms,
            touched_ms: now_ms,
            data,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a JSON map always serialises")
    }

    pub(crate) fn from_json(s: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(s)
    }

    /// How long the store must keep this record from `now_ms`, or `None` when it has expired.
    pub(crate) fn ttl(&self, config: &SessionConfig, now_ms: u64) -> Option<Duration> {
        let idle_end = self.touched_ms.saturating_add(millis(config.idle_timeout));
        let absolute_end = self
            .created_ms
            .saturating_add(millis(config.absolute_lifetime));
        let end = idle_end.min(absolute_end);
        (end > now_ms).then(|| Duration::from_millis(end - now_ms))
    }

    /// Whether a read-only request should refresh the idle timer: only once half of it has
    /// passed, so most reads cost no write.
    pub(crate) fn wants_touch(&self, config: &SessionConfig, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.touched_ms) >= millis(config.idle_timeout) / 2
    }
}

/// What one request did to its session, replayed onto the newest stored data on every
/// compare-and-set retry, so keys this request did not touch keep their newest values.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changes {
    /// The request called `clear()`: start from an empty map, then apply `keys`.
    pub(crate) cleared: bool,
    /// Keys set (`Some`) or removed (`None`), last write wins within the request.
    pub(crate) keys: BTreeMap<String, Option<Value>>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        !self.cleared && self.keys.is_empty()
    }

    pub(crate) fn apply(&self, base: &Map<String, Value>) -> Map<String, Value> {
        let mut data = if self.cleared {
            Map::new()
        } else {
            base.clone()
        };
        for (k, v) in &self.keys {
            match v {
                Some(v) => data.insert(k.clone(), v.clone()),
                None => data.remove(k),
            };
        }
        data
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ttl_is_the_nearer_of_idle_and_absolute_end() {
        let config = SessionConfig::default()
            .with_idle_timeout(Duration::from_secs(10))
            .with_absolute_lifetime(Duration::from_secs(15));
        let mut r = Record::new(1_000_000, Map::new());
        assert_eq!(r.ttl(&config, 1_000_000), Some(Duration::from_secs(10)));
        r.touched_ms = 1_008_000;
        assert_eq!(r.ttl(&config, 1_008_000), Some(Duration::from_secs(7)));
        assert_eq!(r.ttl(&config, 1_015_000), None);
    }

    #[test]
    fn changes_replay_onto_newer_data() {
        let mut c = Changes::default();
        c.keys.insert("a".into(), Some(json!(1)));
        c.keys.insert("gone".into(), None);
        let base = json!({"b": 2, "gone": 3}).as_object().unwrap().clone();
        assert_eq!(Value::Object(c.apply(&base)), json!({"a": 1, "b": 2}));
        c.cleared = true;
        assert_eq!(Value::Object(c.apply(&base)), json!({"a": 1}));
    }
}
