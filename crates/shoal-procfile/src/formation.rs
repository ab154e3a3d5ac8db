//! The formation spec: how many instances of each process type run (`web=3,worker=2`).
//!
//! Items are `TYPE=COUNT`, separated by commas and/or spaces. `all=N` sets every type; a named
//! type overrides `all` wherever it appears. A count of 0 declares a type without running it.

use std::fmt;

/// The most instances one process type may have: each type owns a block of 100 ports.
pub const MAX_PER_TYPE: u32 = 100;

/// A parsed, not yet resolved, formation spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spec {
    /// `all=N`, if given.
    pub all: Option<u32>,
    /// Named types and their counts, in the order given.
    pub counts: Vec<(String, u32)>,
}

/// Why a formation spec is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("formation spec is empty; expected `TYPE=COUNT[,TYPE=COUNT…]`, e.g. `web=2,worker=1`")]
    Empty,
    #[error("`{item}` in the formation spec is not `TYPE=COUNT`, e.g. `web=2`")]
    NotAnItem { item: String },
    #[error(
        "`{item}` in the formation spec has count `{count}`; expected a whole number from 0 to {MAX_PER_TYPE}"
    )]
    BadCount { item: String, count: String },
    #[error("`{name}` appears twice in the formation spec")]
    Repeated { name: String },
}

impl Spec {
    /// Parses `web=3,worker=2` / `all=2 worker=0`.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let mut spec = Spec::default();
        let items = text
            .split([',', ' ', '\t', '\n'])
            .filter(|item| !item.is_empty());
        let mut any = false;
        for item in items {
            any = true;
            let Some((name, count)) = item.split_once('=') else {
                return Err(SpecError::NotAnItem { item: item.into() });
            };
            if name.is_empty() {
                return Err(SpecError::NotAnItem { item: item.into() });
            }
            let count_value = count
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= MAX_PER_TYPE && !count.starts_with('+'))
                .ok_or_else(|| SpecError::BadCount {
                    item: item.into(),
                    count: count.into(),
                })?;
            let repeated = if name == "all" {
                spec.all.replace(count_value).is_some()
            } else if spec.counts.iter().any(|(n, _)| n == name) {
                true
            } else {
                spec.counts.push((name.to_owned(), count_value));
                false
            };
            if repeated {
                return Err(SpecError::Repeated { name: name.into() });
            }
        }
        if !any {
            return Err(SpecError::Empty);
        }
        Ok(spec)
    }

    /// The count for process type `name`: its own item, else `all`, else `default`.
    pub fn count_for(&self, name: &str, default: u32) -> u32 {
        self.counts
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, c)| c)
            .or(self.all)
            .unwrap_or(default)
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let all = self.all.map(|n| ("all", n));
        for (name, count) in all
            .into_iter()
            .chain(self.counts.iter().map(|(n, c)| (n.as_str(), *c)))
        {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{name}={count}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_counts_and_all() {
        let spec = Spec::parse("all=2, worker=0 clock=1").unwrap();
        assert_eq!(spec.all, Some(2));
        assert_eq!(spec.count_for("worker", 1), 0);
        assert_eq!(spec.count_for("web", 1), 2);
        assert_eq!(spec.count_for("clock", 1), 1);
        assert_eq!(spec.to_string(), "all=2,worker=0,clock=1");
        assert_eq!(Spec::parse("web=3").unwrap().count_for("worker", 1), 1);
    }

    #[test]
    fn rejects_malformed_items() {
        assert_eq!(Spec::parse(" , ").unwrap_err(), SpecError::Empty);
        assert!(matches!(
            Spec::parse("web"),
            Err(SpecError::NotAnItem { .. })
        ));
        assert!(matches!(
            Spec::parse("=2"),
            Err(SpecError::NotAnItem { .. })
        ));
        assert!(matches!(
            Spec::parse("web=-1"),
            Err(SpecError::BadCount { .. })
        ));
        assert!(matches!(
            Spec::parse("web=+1"),
            Err(SpecError::BadCount { .. })
        ));
        assert!(matches!(
            Spec::parse("web=101"),
            Err(SpecError::BadCount { .. })
        ));
        assert!(matches!(
            Spec::parse("web=1,web=2"),
            Err(SpecError::Repeated { .. })
        ));
        assert_eq!(
            Spec::parse("web=lots").unwrap_err().to_string(),
            "`web=lots` in the formation spec has count `lots`; expected a whole number from 0 to 100"
        );
    }
}
