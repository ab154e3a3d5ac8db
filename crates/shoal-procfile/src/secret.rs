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

/// Whether `key=value` holds a secret: its name looks secret ([`is_secret_key`]) or its value
/// carries a URL password (`postgres://app:hunter2@db/app`). This is the one rule for secrets:
/// `shoal check` masks these values ([`display_value`]) and `shoal export` keeps them out of
/// files that others may read.
pub fn is_secret(key: &str, value: &str) -> bool {
    is_secret_key(key) || !url_passwords(value).is_empty()
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

/// Replaces the password of every `scheme://user:password@host…` in `value` with `****`.
pub fn mask_url_password(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut shown = 0;
    for password in url_passwords(value) {
        out.push_str(&value[shown..password.start]);
        out.push_str("****");
        shown = password.end;
    }
    out.push_str(&value[shown..]);
    out
}

/// Where the passwords of the URLs in `value` are: in each `scheme://AUTHORITY`, the text
/// between the first `:` and the last `@` of the authority. The authority ends at the first `/`
/// or whitespace only, not at `?` or `#` as RFC 3986 has it: libpq and many clients take an
/// unescaped `#` or `?` in a password as part of it, and a password wrongly taken for
/// something else would be shown.
fn url_passwords(value: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = value[from..].find("://") {
        let start = from + i + 3;
        let end = value[start..]
            .find(|c: char| c == '/' || c.is_whitespace())
            .map_or(value.len(), |e| start + e);
        let authority = &value[start..end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            found.push(start + colon + 1..start + at);
        }
        // An authority holds no `/`, so the next URL's `://` starts after this one's password.
        from = start;
    }
    found
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

    #[test]
    fn masks_every_url_password_and_passwords_with_odd_characters() {
        assert_eq!(
            mask_url_password("redis://:s3cret@cache:6379/0"),
            "redis://:****@cache:6379/0"
        );
        assert_eq!(
            mask_url_password("postgres://app:hun#ter?2@db/app"),
            "postgres://app:****@db/app"
        );
        assert_eq!(
            mask_url_password("redis://a:one@h1,redis://b:two@h2 amqp://c:three@h3/v"),
            "redis://a:****@h1,redis://b:****@h2 amqp://c:****@h3/v"
        );
        assert_eq!(
            mask_url_password("https://example.com/a:b@c"),
            "https://example.com/a:b@c"
        );
        assert_eq!(mask_url_password("no url: a:b@c"), "no url: a:b@c");
    }

    /// `shoal export` keeps out of readable files exactly what `shoal check` masks.
    #[test]
    fn secret_is_what_is_masked() {
        for (key, value, secret) in [
            ("DATABASE_URL", "postgres://app:hunter2@db/app", true),
            ("REDIS_URL", "redis://:s3cret@cache:6379/0", true),
            ("SESSION_URL", "memcache://u:p@[::1]:11211", true),
            ("API_KEY", "abc", true),
            ("DATABASE_URL", "postgres://db/app", false),
            ("REDIS_URL", "redis://user@host/0", false),
            ("CALLBACK", "https://example.com/?next=/a:b@c", false),
            ("MODE", "yes", false),
        ] {
            assert_eq!(is_secret(key, value), secret, "{key}={value}");
            assert_eq!(display_value(key, value) != value, secret, "{key}={value}");
        }
    }
}
