//! The Memcached backend, speaking the meta text protocol (memcached ≥ 1.6) over a small pool
//! of TCP connections. The version of a record is memcached's own CAS value: `replace` is
//! `ms KEY C<cas>`, which answers `EX` when someone wrote in between and `NF` when the item is
//! gone, so a deleted or expired session is never written back. `create` is `ms … ME` (add);
//! `delete_if` is `md KEY C<cas>`, with the same answers.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Loaded, StoreOptions};
use crate::error::StoreError;
use crate::record::Record;

/// Idle connections kept for reuse; more can be open at once, the rest are closed after use.
const POOL_SIZE: usize = 16;
/// memcached reads an exptime above this many seconds as a unix timestamp.
const RELATIVE_LIMIT_SECS: u64 = 30 * 24 * 3600;

pub(crate) struct MemcachedStore {
    addr: String,
    prefix: String,
    idle: Mutex<Vec<Conn>>,
}

struct Conn(BufReader<TcpStream>);

/// `HOST:PORT` of a `memcache://HOST[:PORT]` URL.
pub(crate) fn address(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?']).next()?;
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:11211")
        },
    )
}

/// The exptime to send for `ttl`: whole seconds rounded up, as a unix timestamp beyond 30 days.
pub(crate) fn exptime(ttl: Duration, now: SystemTime) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let secs = secs.max(1);
    if secs > RELATIVE_LIMIT_SECS {
        now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + secs
    } else {
        secs
    }
}

impl MemcachedStore {
    pub(crate) async fn connect(
        addr: String,
        options: &StoreOptions,
    ) -> Result<MemcachedStore, StoreError> {
        let store = MemcachedStore {
            addr,
            prefix: format!("{}:", options.namespace),
            idle: Mutex::new(Vec::new()),
        };
        // `mn` (meta no-op) also proves the server speaks the meta protocol.
        let line = store.request(b"mn\r\n".to_vec(), false).await?.0;
        if line != "MN" {
            return Err(StoreError::Protocol(line));
        }
        Ok(store)
    }

    pub(crate) async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let cmd = format!("mg {}{id} v c\r\n", self.prefix).into_bytes();
        let (line, value) = self.request(cmd, true).await?;
        if line == "EN" {
            return Ok(None);
        }
        let cas = line
            .split(' ')
            .find_map(|t| t.strip_prefix('c'))
            .and_then(|c| c.parse().ok());
        match (cas, value) {
            (Some(version), Some(value)) => Ok(Some(Loaded {
                version,
                record: Record::from_json(&value).map_err(StoreError::Corrupt)?,
            })),
            _ => Err(StoreError::Protocol(line)),
        }
    }

    pub(crate) async fn create(
        &self,
        id: &str,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self.set(id, record, ttl, "ME").await?.as_str() {
            "HD" => Ok(true),
            "NS" => Ok(false),
            other => Err(StoreError::Protocol(other.to_owned())),
        }
    }

    pub(crate) async fn replace(
        &self,
        id: &str,
        version: u64,
        record: &Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self
            .set(id, record, ttl, &format!("C{version}"))
            .await?
            .as_str()
        {
            "HD" => Ok(true),
            "EX" | "NF" => Ok(false),
            other => Err(StoreError::Protocol(other.to_owned())),
        }
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let line = self
            .request(format!("md {}{id}\r\n", self.prefix).into_bytes(), false)
            .await?
            .0;
        match line.as_str() {
            "HD" | "NF" => Ok(()),
            _ => Err(StoreError::Protocol(line)),
        }
    }

    pub(crate) async fn delete_if(&self, id: &str, version: u64) -> Result<bool, StoreError> {
        let cmd = format!("md {}{id} C{version}\r\n", self.prefix).into_bytes();
        let line = self.request(cmd, false).await?.0;
        match line.as_str() {
            "HD" => Ok(true),
            "EX" | "NF" => Ok(false),
            _ => Err(StoreError::Protocol(line)),
        }
    }

    async fn set(
        &self,
        id: &str,
        record: &Record,
        ttl: Duration,
        flag: &str,
    ) -> Result<String, StoreError> {
        let data = record.to_json();
        let exptime = exptime(ttl, SystemTime::now());
        let mut cmd = format!(
            "ms {}{id} {} T{exptime} {flag}\r\n",
            self.prefix,
            data.len()
        )
        .into_bytes();
        cmd.extend_from_slice(data.as_bytes());
        cmd.extend_from_slice(b"\r\n");
        Ok(self.request(cmd, false).await?.0)
    }

    /// Sends one command and reads its status line, plus the value block after a `VA` line
    /// when `with_value`. A connection is only reused after a complete exchange, so a
    /// failure or a timeout (the future dropped mid-way) never leaves a desynchronised one.
    async fn request(
        &self,
        cmd: Vec<u8>,
        with_value: bool,
    ) -> Result<(String, Option<Vec<u8>>), StoreError> {
        let pooled = self.idle.lock().expect("pool lock").pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn(BufReader::new(TcpStream::connect(&self.addr).await?)),
        };
        conn.0.get_mut().write_all(&cmd).await?;
        let mut line = String::new();
        if conn.0.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let line = line.trim_end().to_owned();
        let mut body = None;
        if with_value && line.starts_with("VA ") {
            let len: usize = line[3..]
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Protocol(line.clone()))?;
            let mut buf = vec![0; len + 2];
            conn.0.read_exact(&mut buf).await?;
            buf.truncate(len);
            body = Some(buf);
        }
        if line.starts_with("SERVER_ERROR") || line.starts_with("CLIENT_ERROR") || line == "ERROR" {
            return Err(StoreError::Protocol(line));
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < POOL_SIZE {
            idle.push(conn);
        }
        Ok((line, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_switches_to_a_timestamp_beyond_thirty_days() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(exptime(Duration::from_millis(1), now), 1);
        assert_eq!(exptime(Duration::from_millis(1500), now), 2);
        assert_eq!(
            exptime(Duration::from_secs(RELATIVE_LIMIT_SECS), now),
            RELATIVE_LIMIT_SECS
        );
        assert_eq!(
            exptime(Duration::from_secs(RELATIVE_LIMIT_SECS + 1), now),
            1_800_000_000 + RELATIVE_LIMIT_SECS + 1
        );
    }

    #[test]
    fn address_defaults_the_port() {
        assert_eq!(
            address("memcache://127.0.0.1:11211").as_deref(),
            Some("127.0.0.1:11211")
        );
        assert_eq!(address("memcache://cache").as_deref(), Some("cache:11211"));
        assert_eq!(address("memcache://"), None);
    }
}
