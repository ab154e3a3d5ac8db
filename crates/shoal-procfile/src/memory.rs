//! Memory limits (`--memory-limit 512M`, `--memory-limit web=1G`): parsed here, set on the
//! plan's process types ([`apply`]), enforced by the supervisor and carried by the exporters.
//!
//! Sizes are binary, as systemd and Docker read them: `K` is 1024 bytes, `M` 1024 K, `G`
//! 1024 M (`Ki`, `Mi`, `Gi` and a trailing `B` are accepted too); a number alone is bytes.

use std::fmt;

use crate::plan::Plan;
use crate::suggest;

/// The least limit accepted: below it no program starts.
pub const MIN_BYTES: u64 = 1024 * 1024;

/// One `--memory-limit`: for every process type, or for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The process type (`web=512M`); `None` for every type (`512M`).
    pub kind: Option<String>,
    pub bytes: u64,
}

/// Why a `--memory-limit` value or its type is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryLimitError {
    /// The size is not a size.
    #[error(
        "`{text}` is not a memory size; expected a number with `K`, `M` or `G` (e.g. `512M`, `1G`), optionally after `TYPE=`"
    )]
    Size { text: String },
    /// The size is below [`MIN_BYTES`].
    #[error("`{text}` is too small a memory limit; the least is `1M`")]
    TooSmall { text: String },
    /// The type is not in the Procfile.
    #[error(
        "`--memory-limit {kind}=…` names no process type of the Procfile{}",
        did_you_mean(suggestion)
    )]
    UnknownType {
        kind: String,
        suggestion: Option<String>,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map_or(String::new(), |s| format!("; did you mean `{s}`?"))
}

impl MemoryLimit {
    /// Parses `SIZE` or `TYPE=SIZE`.
    pub fn parse(text: &str) -> Result<MemoryLimit, MemoryLimitError> {
        let (kind, size) = match text.split_once('=') {
            Some((kind, size)) if !kind.trim().is_empty() => (Some(kind.trim().to_owned()), size),
            Some(_) => {
                return Err(MemoryLimitError::Size {
                    text: text.to_owned(),
                });
            }
            None => (None, text),
        };
        let bytes = parse_size(size.trim()).ok_or_else(|| MemoryLimitError::Size {
            text: text.to_owned(),
        })?;
        if bytes < MIN_BYTES {
            return Err(MemoryLimitError::TooSmall {
                text: text.to_owned(),
            });
        }
        Ok(MemoryLimit { kind, bytes })
    }
}

/// `512M`, `1G`, `1536Mi`, `1048576`: bytes.
fn parse_size(text: &str) -> Option<u64> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Sets each process type's limit: the one given for it, else the one for every type (later
/// flags win). A type the Procfile does not define is an error.
pub fn apply(plan: &mut Plan, limits: &[MemoryLimit]) -> Result<(), MemoryLimitError> {
    for limit in limits {
        if let Some(kind) = &limit.kind
            && plan.process_type(kind).is_none()
        {
            return Err(MemoryLimitError::UnknownType {
                kind: kind.clone(),
                suggestion: suggest::closest(kind, plan.types.iter().map(|t| t.name.as_str()))
                    .map(str::to_owned),
            });
        }
    }
    let every = limits.iter().rev().find(|l| l.kind.is_none());
    for process_type in &mut plan.types {
        let own = limits
            .iter()
            .rev()
            .find(|l| l.kind.as_deref() == Some(process_type.name.as_str()));
        process_type.memory_limit = own.or(every).map(|l| l.bytes);
    }
    Ok(())
}

/// A size as shoal says it: `512 MiB`, `1.5 GiB`.
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: f64 = 1024.0 * 1024.0;
        let mib = self.0 as f64 / MIB;
        if mib >= 1024.0 {
            let gib = mib / 1024.0;
            if gib.fract() == 0.0 {
                write!(f, "{gib:.0} GiB")
            } else {
                write!(f, "{gib:.1} GiB")
            }
        } else {
            write!(f, "{mib:.0} MiB")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary() {
        let bytes = |text: &str| MemoryLimit::parse(text).unwrap().bytes;
        assert_eq!(bytes("512M"), 512 << 20);
        assert_eq!(bytes("1G"), 1 << 30);
        assert_eq!(bytes("1536Mi"), 1536 << 20);
        assert_eq!(bytes("2048k"), 2 << 20);
        assert_eq!(bytes("1GB"), 1 << 30);
        assert_eq!(bytes("1048576"), 1 << 20);
        assert_eq!(
            MemoryLimit::parse("web=1G").unwrap(),
            MemoryLimit {
                kind: Some("web".into()),
                bytes: 1 << 30
            }
        );
    }

    #[test]
    fn bad_values_are_named() {
        for text in [
            "",
            "512X",
            "M",
            "-5M",
            "web=",
            "=1G",
            "1.5G",
            "99999999999999G",
        ] {
            let error = MemoryLimit::parse(text).unwrap_err();
            assert_eq!(
                error,
                MemoryLimitError::Size { text: text.into() },
                "{text}"
            );
        }
        assert_eq!(
            MemoryLimit::parse("512K").unwrap_err().to_string(),
            "`512K` is too small a memory limit; the least is `1M`"
        );
        assert_eq!(
            MemoryLimit::parse("web=lots").unwrap_err().to_string(),
            "`web=lots` is not a memory size; expected a number with `K`, `M` or `G` (e.g. `512M`, `1G`), optionally after `TYPE=`"
        );
    }

    #[test]
    fn sizes_read_as_said() {
        assert_eq!(Size(612 << 20).to_string(), "612 MiB");
        assert_eq!(Size(1 << 30).to_string(), "1 GiB");
        assert_eq!(Size(3 << 29).to_string(), "1.5 GiB");
    }
}
