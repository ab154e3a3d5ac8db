//! The Redis/Valkey backend: one string per session, `VERSION\nRECORD-JSON`, with a `PX`
//! TTL. `create` is `SET … NX PX` (only if absent). `replace` is a Lua script, so the check
//! and the write are one atomic step on the server: it writes only when the stored value still
//! starts with the version the request loaded, and a missing key (deleted or expired) never
//! matches, so a replace never re-creates a session. `delete_if` is a script of the same
//! shape that deletes instead of writing.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};

use super::{Loaded, StoreOptions};
use crate::error::StoreError;
use crate::record::{Record, millis};

/// KEYS[1] = the session key, ARGV[1] = `VERSION\n` expected, ARGV[2] = the new value,
/// ARGV[3] = TTL in milliseconds.
const REPLACE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1";

/// KEYS[1] = the session key, ARGV[1] = `VERSION\n` expected.
const DELETE_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1";

pub(crate) struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    replace: Script,
    delete_if: Script,
}

impl RedisStore {
    pub(crate) async fn connect(
        client: Client,
        options: &StoreOptions,
    ) -> Result<RedisStore, StoreError> {
        // Fail fast while the server is away instead of queueing requests behind reconnects;
        // the manager reconnects in the background and the next request succeeds again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = client.get_connection_manager_with_config(config).await?;
        let _: () = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(RedisStore {
            conn,
            prefix: format!("{}:", options.namespace),
            replace: Script::new(REPLACE),
            delete_if: Script::new(DELETE_IF),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let value: Option<Vec<u8>> = self.conn.clone().get(self.key(id)).await?;
        let Some(value) = value else { return Ok(None) };
        let (version, record) = decode(&value).ok_or(StoreError::Malformed("no version prefix"))?;
        let record = Record::from_json(record).map_err(StoreError::Corrupt)?;
        Ok(Some(Loaded { version, record }))
    }

    pub(crate) async fn create(
        &self,
        id: &str,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done: Option<String> = redis::cmd("SET")
            .arg(self.key(id))
            .arg(encode(1, record))
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl).max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(done.is_some())
    }

    pub(crate) async fn replace(
        &self,
        id: &str,
        version: u64,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .replace
            .key(self.key(id))
            .arg(format!("{version}\n"))
            .arg(encode(version + 1, record))
            .arg(millis(ttl).max(1))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let _: i64 = self.conn.clone().del(self.key(id)).await?;
        Ok(())
    }

    pub(crate) async fn delete_if(&self, id: &str, version: u64) -> Result<bool, StoreError> {
        let done: i64 = self
            .delete_if
            .key(self.key(id))
            .arg(format!("{version}\n"))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }
}

fn encode(version: u64, record: &Record) -> String {
    format!("{version}\n{}", record.to_json())
}

fn decode(value: &[u8]) -> Option<(u64, &[u8])> {
    let newline = value.iter().position(|b| *b == b'\n')?;
    let version = std::str::from_utf8(&value[..newline]).ok()?.parse().ok()?;
    Some((version, &value[newline + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_version() {
        let record = Record::new(5, serde_json::Map::new());
        let value = encode(12, &record);
        assert!(value.starts_with("12\n{"));
        let (version, json) = decode(value.as_bytes()).unwrap();
        assert_eq!((version, Record::from_json(json).unwrap()), (12, record));
        assert_eq!(decode(b"no version"), None);
    }
}
