//! How the app's name and the Procfile's process types become names on each target, and the
//! errors when that is impossible. The exporters ask this module for every name they write.
//!
//! The mapping (documented in the README):
//! - Kubernetes: lowercase; every character other than `a-z` and `0-9` becomes `-`; runs of `-`
//!   collapse and leading or trailing ones go (`My_App` → `my-app`). The app name must then start
//!   with a letter (it begins Service names), and `APP-TYPE` must fit in 63 characters.
//! - systemd: characters other than `A-Z a-z 0-9 : _ . -` become `-`, runs collapse, ends are
//!   trimmed; process types are valid unit-name parts as they are.
//! - compose: the project name is lowercased, characters other than `a-z 0-9 _ -` become `-`,
//!   it must start with a letter or digit; process types are valid service names as they are.
//! - swarm: the stack and the process types are lowercased (names are looked up in DNS, where
//!   case does not count), characters other than `a-z 0-9 _ -` become `-`, runs of `-`
//!   collapse, and `-` or `_` at either end goes, as Docker's names must start and end with a
//!   letter or digit. A service is `STACK_TYPE`, at most 63 characters; the stack name is at
//!   most [`SWARM_STACK_MAX`] characters, so that its secret's name fits Docker's 64.
//!
//! Two process types that end up with the same name are an error naming both.

use std::fmt;

/// The longest Kubernetes object name shoal writes: a DNS-1123 label, as Service names must be.
pub const KUBERNETES_MAX: usize = 63;
/// The longest systemd unit name (`UNIT_NAME_MAX` less the terminating NUL).
pub const SYSTEMD_MAX: usize = 255;
/// The longest Docker service name (`STACK_TYPE`).
pub const SWARM_SERVICE_MAX: usize = 63;
/// The longest stack name: its secret is named `STACK-env-` and 12 hexadecimal digits, and
/// Docker's secret names have at most 64 characters.
pub const SWARM_STACK_MAX: usize = 64 - "-env-".len() - 12;

/// An engine shoal exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Kubernetes,
    Systemd,
    Compose,
    Swarm,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Kubernetes => "kubernetes",
            Target::Systemd => "systemd",
            Target::Compose => "compose",
            Target::Swarm => "swarm",
        })
    }
}

/// Why a name cannot be used on a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing usable is left of the name once invalid characters are replaced.
    #[error("{what} `{value}` cannot be used as a {target} name: {reason}{hint}")]
    Invalid {
        what: &'static str,
        value: String,
        target: Target,
        reason: String,
        hint: &'static str,
    },
    /// Two process types map to the same name.
    #[error(
        "process types `{first}` and `{second}` would both be named `{name}` on {target}; rename one of them in the Procfile"
    )]
    Clash {
        first: String,
        second: String,
        name: String,
        target: Target,
    },
}

const APP_HINT: &str = "; choose another with --app";
const TYPE_HINT: &str = "; rename it in the Procfile";

/// The app's name on `target`.
pub fn app(value: &str, target: Target) -> Result<String, NameError> {
    let invalid = |reason: &str| NameError::Invalid {
        what: "the app name",
        value: value.to_owned(),
        target,
        reason: reason.to_owned(),
        hint: APP_HINT,
    };
    let name = match target {
        Target::Kubernetes => kubernetes_slug(value),
        Target::Systemd => systemd_slug(value),
        Target::Compose => slug(&value.to_ascii_lowercase(), |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        })
        .trim_start_matches(['_', '-'])
        .to_owned(),
        Target::Swarm => swarm_slug(value),
    };
    if name.is_empty() {
        return Err(invalid("it has no letter or digit"));
    }
    if target == Target::Swarm && name.len() > SWARM_STACK_MAX {
        return Err(invalid(&format!(
            "`{name}` is longer than {SWARM_STACK_MAX} characters, and the stack's secret `{name}-env-…` would be longer than Docker's 64"
        )));
    }
    if target == Target::Kubernetes && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid(&format!(
            "`{name}` does not start with a letter, as Kubernetes Service names must"
        )));
    }
    Ok(name)
}

/// The names of `types` on `target`, in order, each checked to be valid and unique. `app` is the
/// app's name on `target`; names built from both must fit the target's limit.
pub fn types(app: &str, types: &[&str], target: Target) -> Result<Vec<String>, NameError> {
    let mut names: Vec<String> = Vec::with_capacity(types.len());
    for (i, &kind) in types.iter().enumerate() {
        let name = match target {
            Target::Kubernetes => kubernetes_slug(kind),
            // Procfile names (`[A-Za-z0-9_-]+`) are valid unit-name parts and service names.
            Target::Systemd => systemd_slug(kind),
            Target::Compose => slug(kind, |c| c.is_ascii_alphanumeric() || "._".contains(c)),
            Target::Swarm => swarm_slug(kind),
        };
        let invalid = |reason: String| NameError::Invalid {
            what: "process type",
            value: kind.to_owned(),
            target,
            reason,
            hint: TYPE_HINT,
        };
        if name.is_empty() {
            return Err(invalid("it has no letter or digit".to_owned()));
        }
        if name.eq_ignore_ascii_case(shoal_procfile::plan::RELEASE) {
            return Err(invalid(
                "its name would be that of the `release` step's own objects".to_owned(),
            ));
        }
        let full = match target {
            Target::Swarm => format!("{app}_{name}"),
            _ => format!("{app}-{name}"),
        };
        let (max, longest) = match target {
            Target::Kubernetes => (KUBERNETES_MAX, full.clone()),
            // The longest unit written for a type: `APP-TYPE.100.service`.
            Target::Systemd => (SYSTEMD_MAX, format!("{full}.100.service")),
            Target::Compose => (usize::MAX, full.clone()),
            Target::Swarm => (SWARM_SERVICE_MAX, full.clone()),
        };
        if longest.len() > max {
            return Err(invalid(format!(
                "`{longest}` would be longer than {max} characters; use a shorter --app or type name"
            )));
        }
        if let Some(j) = names.iter().position(|n| *n == name) {
            return Err(NameError::Clash {
                first: types[j].to_owned(),
                second: types[i].to_owned(),
                name,
                target,
            });
        }
        names.push(name);
    }
    Ok(names)
}

fn kubernetes_slug(value: &str) -> String {
    slug(&value.to_ascii_lowercase(), |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    })
}

fn swarm_slug(value: &str) -> String {
    slug(&value.to_ascii_lowercase(), |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    })
    .trim_matches(['_', '-'])
    .to_owned()
}

fn systemd_slug(value: &str) -> String {
    slug(value, |c| c.is_ascii_alphanumeric() || ":_.".contains(c))
}

/// `value` with every character that `keep` rejects turned into `-`, runs of `-` collapsed and
/// `-` trimmed from both ends.
fn slug(value: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let c = if keep(c) { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_are_dns_labels() {
        assert_eq!(app("My_App 2", Target::Kubernetes).unwrap(), "my-app-2");
        assert_eq!(app("--demo--", Target::Kubernetes).unwrap(), "demo");
        assert_eq!(
            types("demo", &["web", "Worker_Low", "clock"], Target::Kubernetes).unwrap(),
            ["web", "worker-low", "clock"]
        );
    }

    #[test]
    fn impossible_names_are_errors() {
        let err = app("123", Target::Kubernetes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the app name `123` cannot be used as a kubernetes name: `123` does not start with a letter, as Kubernetes Service names must; choose another with --app"
        );
        assert!(app("!!!", Target::Systemd).is_err());
        assert!(app("___", Target::Compose).is_err());
        assert!(types("demo", &["___"], Target::Kubernetes).is_err());
        let long = "w".repeat(60);
        let err = types("demo", &[&long], Target::Kubernetes).unwrap_err();
        assert!(
            err.to_string().contains("longer than 63 characters"),
            "{err}"
        );
    }

    #[test]
    fn clashes_name_both_types() {
        let err = types("demo", &["web", "worker_1", "Worker-1"], Target::Kubernetes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "process types `worker_1` and `Worker-1` would both be named `worker-1` on kubernetes; rename one of them in the Procfile"
        );
        // Case matters to systemd and compose, so the same types are fine there.
        assert!(types("demo", &["web", "worker_1", "Worker-1"], Target::Systemd).is_ok());
    }

    #[test]
    fn swarm_names_start_and_end_with_a_letter_or_digit() {
        assert_eq!(app("_My Shop_", Target::Swarm).unwrap(), "my-shop");
        assert_eq!(
            types("shop", &["web", "Worker_Low", "clock-"], Target::Swarm).unwrap(),
            ["web", "worker_low", "clock"]
        );
        // DNS does not tell `Web` from `web`.
        assert!(matches!(
            types("shop", &["web", "Web"], Target::Swarm),
            Err(NameError::Clash { .. })
        ));
        let long = "s".repeat(SWARM_STACK_MAX + 1);
        let err = app(&long, Target::Swarm).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("longer than {SWARM_STACK_MAX} characters")),
            "{err}"
        );
        let long_type = "w".repeat(60);
        let err = types("shop", &[&long_type], Target::Swarm).unwrap_err();
        assert!(
            err.to_string().contains("longer than 63 characters"),
            "{err}"
        );
    }

    #[test]
    fn systemd_and_compose_keep_what_they_allow() {
        assert_eq!(app("My App", Target::Systemd).unwrap(), "My-App");
        assert_eq!(app("My App", Target::Compose).unwrap(), "my-app");
        assert_eq!(
            types("x", &["web_api", "Clock"], Target::Compose).unwrap(),
            ["web_api", "Clock"]
        );
    }
}
