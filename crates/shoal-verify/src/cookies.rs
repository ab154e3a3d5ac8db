//! The client's cookie jar: what a browser keeps between requests to one host (RFC 6265,
//! simplified to one host: `Domain` is not needed, `Secure` cookies are sent as a browser sends
//! them to `localhost`). Each replay starts with an empty jar, as a fresh visitor.

use crate::clock;

/// Cookies kept by one client.
#[derive(Debug, Clone, Default)]
pub(crate) struct CookieJar {
    cookies: Vec<Cookie>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

impl CookieJar {
    /// The `Cookie` header for a request to `path`: the cookies whose path matches, longer
    /// paths first (then oldest first).
    pub(crate) fn header_for(&self, path: &str) -> Option<String> {
        let path = path.split(['?', '#']).next().unwrap_or("/");
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| path_matches(&c.path, path))
            .collect();
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Takes in one `Set-Cookie` value received in answer to a request for `request_path`.
    pub(crate) fn store(&mut self, request_path: &str, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        let mut path = None;
        let mut expired = false;
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            let (key, val) = (key.trim(), val.trim());
            if key.eq_ignore_ascii_case("path") && val.starts_with('/') {
                path = Some(val.to_owned());
            } else if key.eq_ignore_ascii_case("max-age") {
                if let Ok(age) = val.parse::<i64>() {
                    expired = age <= 0;
                }
            } else if key.eq_ignore_ascii_case("expires")
                && let Some(when) = clock::parse_cookie_date(val)
            {
                expired = when <= clock::now_secs();
            }
        }
        let path = path.unwrap_or_else(|| default_path(request_path));
        self.cookies.retain(|c| !(c.name == name && c.path == path));
        if !expired {
            self.cookies.push(Cookie {
                name: name.to_owned(),
                value: value.trim().to_owned(),
                path,
            });
        }
    }
}

/// The name of the cookie a `Set-Cookie` value sets.
pub(crate) fn set_cookie_name(set_cookie: &str) -> Option<&str> {
    let first = set_cookie.split(';').next()?;
    let (name, _) = first.split_once('=')?;
    let name = name.trim();
    (!name.is_empty()).then_some(name)
}

/// RFC 6265 §5.1.4: the directory of the request path.
fn default_path(request_path: &str) -> String {
    let path = request_path.split(['?', '#']).next().unwrap_or("");
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(at) => path[..at].to_owned(),
    }
}

/// RFC 6265 §5.1.4: whether a cookie of `cookie_path` goes with a request for `path`.
fn path_matches(cookie_path: &str, path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_follow_paths_and_expire() {
        let mut jar = CookieJar::default();
        jar.store("/login", "sid=abc; Path=/; HttpOnly; SameSite=Lax");
        jar.store("/admin/page", "admin=1");
        jar.store("/", "theme=dark; Max-Age=3600");
        assert_eq!(jar.header_for("/").as_deref(), Some("sid=abc; theme=dark"));
        assert_eq!(
            jar.header_for("/admin/x?y=1").as_deref(),
            Some("admin=1; sid=abc; theme=dark")
        );
        assert_eq!(
            jar.header_for("/administrator").as_deref(),
            Some("sid=abc; theme=dark")
        );
        jar.store("/", "sid=def; Path=/");
        jar.store("/", "theme=; Max-Age=0");
        assert_eq!(jar.header_for("/").as_deref(), Some("sid=def"));
        jar.store("/", "sid=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(jar.header_for("/"), None);
        jar.store("/", "garbage");
        assert_eq!(jar.header_for("/"), None);
    }

    #[test]
    fn set_cookie_names() {
        assert_eq!(set_cookie_name("sid=1; Path=/"), Some("sid"));
        assert_eq!(set_cookie_name(" a = b"), Some("a"));
        assert_eq!(set_cookie_name("novalue"), None);
    }
}
