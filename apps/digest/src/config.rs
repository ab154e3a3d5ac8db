//! The app's configuration, read once from the environment at startup. Every value that is
//! not valid is an error naming the variable and what was expected (URLs with their password
//! masked); nothing is read from the app's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_kit::mask_url;

/// Where a process's data lives and how the worker behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database holding users, jobs and reports.
    pub database: DatabaseUrl,
    /// The session store's URL (Redis, Memcached, PostgreSQL or SQLite, through shoal-kit).
    pub session_url: String,
    /// The largest upload or download, in bytes.
    pub max_bytes: u64,
    /// Let the fetcher reach loopback addresses (tests and local demos only).
    pub allow_loopback: bool,
    /// How long a claimed job stays with its worker without a sign of life.
    pub lease: Duration,
    /// How many times a job is tried before it is marked failed.
    pub max_attempts: u32,
    /// The longest pause between two looks at an empty queue.
    pub poll_max: Duration,
    /// This process's name (`SHOAL_INSTANCE`, else `digest.PID`), for leases and logs.
    pub instance: String,
    /// How many password hashes may run at once (`DIGEST_HASH_CONCURRENCY`, else the CPUs).
    pub hash_concurrency: usize,
    /// How long a sign-in waits for its turn to hash before it is answered 503
    /// (`DIGEST_HASH_WAIT_MS`, else 5 s).
    pub hash_wait: Duration,
    /// How many uploads a web process digests at once (`DIGEST_UPLOAD_CONCURRENCY`, else 8).
    pub upload_concurrency: usize,
    /// How long an upload waits for its turn before it is answered 503
    /// (`DIGEST_UPLOAD_WAIT_MS`, else 5 s).
    pub upload_wait: Duration,
}

/// A validated `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`, passed to the driver as given.
    Postgres(String),
    /// `sqlite://ABSOLUTE_PATH[?…]`: the file and the full URL.
    Sqlite { path: PathBuf, url: String },
}

impl DatabaseUrl {
    /// The URL as given (it may hold a password: show it with [`DatabaseUrl::masked`]).
    pub fn url(&self) -> &str {
        match self {
            DatabaseUrl::Postgres(url) | DatabaseUrl::Sqlite { url, .. } => url,
        }
    }

    /// The URL with its password replaced by `****`.
    pub fn masked(&self) -> String {
        mask_url(self.url())
    }

    /// Parses `DATABASE_URL`.
    pub fn parse(url: &str) -> Result<DatabaseUrl, ConfigError> {
        let invalid = |why: &'static str| ConfigError::DatabaseUrl {
            url: mask_url(url),
            why,
        };
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        let Some(rest) = url.strip_prefix("sqlite://") else {
            return Err(invalid(
                "expected `postgres://USER:PASSWORD@HOST/DB` or `sqlite:///ABSOLUTE/PATH.db`",
            ));
        };
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || !Path::new(path).is_absolute() {
            return Err(invalid(
                "the SQLite file must be an absolute path (`sqlite:///var/lib/digest/digest.db`): \
                 every instance runs in the app directory and must find the same file",
            ));
        }
        Ok(DatabaseUrl::Sqlite {
            path: PathBuf::from(path),
            url: url.to_owned(),
        })
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `DATABASE_URL` has the wrong shape.
    #[error("environment variable `DATABASE_URL` is `{url}`: {why}")]
    DatabaseUrl { url: String, why: &'static str },
    /// There is no place for the default database.
    #[error(
        "neither `XDG_DATA_HOME` nor `HOME` is set, so there is no place for the default database: \
         set `DATABASE_URL` (e.g. `sqlite:///var/lib/digest/digest.db`)"
    )]
    NoDataDir,
    /// A variable is not a value of the expected kind.
    #[error("environment variable `{var}` is `{value}`: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads the configuration through `get` (a variable's value, `None` when unset or empty).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let database = match get("DATABASE_URL") {
            Some(url) => DatabaseUrl::parse(url.trim())?,
            None => {
                let path = default_data_dir(&get)?.join("digest.db");
                let url = format!("sqlite://{}", path.display());
                DatabaseUrl::Sqlite { path, url }
            }
        };
        let session_url = match get("SESSION_URL") {
            Some(url) => url.trim().to_owned(),
            None => match &database {
                DatabaseUrl::Postgres(url) => url.clone(),
                DatabaseUrl::Sqlite { path, .. } => {
                    format!("sqlite://{}", sibling_sessions_file(path).display())
                }
            },
        };
        Ok(Config {
            database,
            session_url,
            max_bytes: match get("DIGEST_MAX_BYTES") {
                Some(v) => parse_bytes(&v).ok_or(ConfigError::Invalid {
                    var: "DIGEST_MAX_BYTES",
                    value: v,
                    expected: "a size in bytes from 1, optionally with `KiB`, `MiB` or `GiB` (e.g. `512MiB`)",
                })?,
                None => 2 << 30,
            },
            allow_loopback: match get("DIGEST_ALLOW_LOOPBACK") {
                Some(v) => parse_bool(&v).ok_or(ConfigError::Invalid {
                    var: "DIGEST_ALLOW_LOOPBACK",
                    value: v,
                    expected: "`1` or `0`",
                })?,
                None => false,
            },
            lease: Duration::from_secs(number(&get, "DIGEST_LEASE_SECS", 1..=3600, 30)?),
            max_attempts: u32::try_from(number(&get, "DIGEST_MAX_ATTEMPTS", 1..=100, 3)?)
                .unwrap_or(3),
            poll_max: Duration::from_millis(number(
                &get,
                "DIGEST_POLL_MAX_MS",
                50..=60_000,
                2000,
            )?),
            instance: get("SHOAL_INSTANCE")
                .unwrap_or_else(|| format!("digest.{}", std::process::id())),
            hash_concurrency: usize::try_from(number(
                &get,
                "DIGEST_HASH_CONCURRENCY",
                1..=1024,
                std::thread::available_parallelism().map_or(1, |n| u64::try_from(n.get()).unwrap_or(1)),
            )?)
            .unwrap_or(1),
            hash_wait: Duration::from_millis(number(
                &get,
                "DIGEST_HASH_WAIT_MS",
                0..=60_000,
                5000,
            )?),
            upload_concurrency: usize::try_from(number(
                &get,
                "DIGEST_UPLOAD_CONCURRENCY",
                1..=1024,
                8,
            )?)
            .unwrap_or(8),
            upload_wait: Duration::from_millis(number(
                &get,
                "DIGEST_UPLOAD_WAIT_MS",
                0..=60_000,
                5000,
            )?),
        })
    }
}

/// `$XDG_DATA_HOME/digest`, else `$HOME/.local/share/digest` (both absolute).
fn default_data_dir(get: &impl Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
    if let Some(xdg) = get("XDG_DATA_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg.join("digest"));
    }
    match get("HOME").map(PathBuf::from) {
        Some(home) if home.is_absolute() => Ok(home.join(".local/share/digest")),
        _ => Err(ConfigError::NoDataDir),
    }
}

/// `…/NAME.db` → `…/NAME-sessions.db`.
fn sibling_sessions_file(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "digest".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-sessions.db"))
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = get(var) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or(ConfigError::Invalid {
            var,
            value,
            expected: match var {
                "DIGEST_LEASE_SECS" => "a number of seconds from 1 to 3600",
                "DIGEST_MAX_ATTEMPTS" => "a number from 1 to 100",
                "DIGEST_HASH_CONCURRENCY" | "DIGEST_UPLOAD_CONCURRENCY" => {
                    "a number from 1 to 1024"
                }
                "DIGEST_HASH_WAIT_MS" | "DIGEST_UPLOAD_WAIT_MS" => {
                    "a number of milliseconds from 0 to 60000"
                }
                _ => "a number of milliseconds from 50 to 60000",
            },
        })
}

fn parse_bytes(value: &str) -> Option<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor).filter(|n| *n > 0)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_files_in_the_data_directory() {
        let c = config(&[("HOME", "/home/ada")]).unwrap();
        assert_eq!(
            c.database.url(),
            "sqlite:///home/ada/.local/share/digest/digest.db"
        );
        assert_eq!(
            c.session_url,
            "sqlite:///home/ada/.local/share/digest/digest-sessions.db"
        );
        let c = config(&[("HOME", "/home/ada"), ("XDG_DATA_HOME", "/data")]).unwrap();
        assert_eq!(c.database.url(), "sqlite:///data/digest/digest.db");
        assert_eq!(c.max_bytes, 2 << 30);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert!(!c.allow_loopback);
        assert!(c.hash_concurrency >= 1);
        assert_eq!(c.hash_wait, Duration::from_secs(5));
        assert_eq!(
            (c.upload_concurrency, c.upload_wait),
            (8, Duration::from_secs(5))
        );
        assert!(matches!(config(&[]), Err(ConfigError::NoDataDir)));
    }

    #[test]
    fn postgres_is_also_the_default_session_store() {
        let c = config(&[("DATABASE_URL", "postgres://app:pw@db/app")]).unwrap();
        assert_eq!(c.session_url, "postgres://app:pw@db/app");
        let c = config(&[
            ("DATABASE_URL", "postgres://app:pw@db/app"),
            ("SESSION_URL", "redis://cache/0"),
        ])
        .unwrap();
        assert_eq!(c.session_url, "redis://cache/0");
    }

    #[test]
    fn bad_urls_are_named_with_the_password_masked() {
        let err = config(&[("DATABASE_URL", "mysql://app:hunter2@db/app")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`mysql://app:****@db/app`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = config(&[("DATABASE_URL", "sqlite://digest.db")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute path"), "{err}");
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(parse_bytes("lots"), None);
        let err = config(&[("HOME", "/h"), ("DIGEST_LEASE_SECS", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`DIGEST_LEASE_SECS` is `0`"), "{err}");
        let err = config(&[("HOME", "/h"), ("DIGEST_ALLOW_LOOPBACK", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DIGEST_ALLOW_LOOPBACK"), "{err}");
        let c = config(&[
            ("HOME", "/h"),
            ("DIGEST_HASH_CONCURRENCY", "3"),
            ("DIGEST_HASH_WAIT_MS", "0"),
        ])
        .unwrap();
        assert_eq!((c.hash_concurrency, c.hash_wait), (3, Duration::ZERO));
        let c = config(&[
            ("HOME", "/h"),
            ("DIGEST_UPLOAD_CONCURRENCY", "2"),
            ("DIGEST_UPLOAD_WAIT_MS", "250"),
        ])
        .unwrap();
        assert_eq!(
            (c.upload_concurrency, c.upload_wait),
            (2, Duration::from_millis(250))
        );
        let err = config(&[("HOME", "/h"), ("DIGEST_UPLOAD_CONCURRENCY", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DIGEST_UPLOAD_CONCURRENCY") && err.contains("from 1 to 1024"),
            "{err}"
        );
        let err = config(&[("HOME", "/h"), ("DIGEST_HASH_CONCURRENCY", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("from 1 to 1024"), "{err}");
    }
}
