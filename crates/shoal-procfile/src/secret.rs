//! Which environment values are secrets, and how they are shown when a plan is printed.

/// Words that mark a variable name as holding a secret.
const SECRET_WORDS: &[&str] = &[
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "PRIVATE",
    "AUTH",
    "SALT",
    "SIGNATURE",
];

/// Whether a variable named `key` looks like it holds a secret: one of its `_`-separated words
/// is `SECRET`, `PASSWORD`, `TOKEN`, `KEY`, … (so `API_KEY` and `DB_PASSWORD` are secret,
/// `KEYBOARD_LAYOUT` is not).
pub fn is_secret_key(key: &str) -> bool {
    key.to_ascii_uppercase()
        .split(['_', '-', '.'])
        .any(|word| SECRET_WORDS.contains(&word))
}

/// The value as it may be shown: masked entirely for a secret key, with only the password
/// masked for a URL with credentials (`postgres://app:****@db/app`), unchanged otherwise.
pub fn display_value(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        return if value.is_empty() {
            String::new()
        } else {
            "****".to_owned()
        };
    }
    mask_url_password(value)
}

/// Replaces the password of `scheme://user:password@host…` with `****`.
pub fn mask_url_password(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = value[authority_start..]
        .find(['/', '?', '#'])
        .map_or(value.len(), |i| authority_start + i);
    let authority = &value[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return value.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return value.to_owned();
    };
    format!(
        "{}{}:****{}",
        &value[..authority_start],
        &authority[..colon],
        &value[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_by_word() {
        for key in [
            "SECRET_KEY_BASE",
            "API_KEY",
            "DB_PASSWORD",
            "GITHUB_TOKEN",
            "aws_secret",
            "SESSION_SECRET",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "KEYBOARD",
            "DATABASE_URL",
            "PORT",
            "RUST_LOG",
            "PASSENGER",
            "PWD",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn masks_url_passwords_only() {
        assert_eq!(
            display_value("DATABASE_URL", "postgres://app:s3cr@t@db:5432/app?x=1"),
            "postgres://app:****@db:5432/app?x=1"
        );
        assert_eq!(
            display_value("REDIS_URL", "redis://localhost:6379"),
            "redis://localhost:6379"
        );
        assert_eq!(
            display_value("REDIS_URL", "redis://user@host/0"),
            "redis://user@host/0"
        );
        assert_eq!(display_value("API_KEY", "abc"), "****");
        assert_eq!(display_value("API_KEY", ""), "");
    }
}
