//! Reading the session id from `Cookie` and writing `Set-Cookie`: the security attributes
//! (`HttpOnly`, `SameSite`, `Secure`, the `__Host-` prefix) are decided here and nowhere else.

use http::HeaderMap;
use http::header::COOKIE;

use crate::config::{SecurePolicy, SessionConfig};
use crate::layer::SetCookie;

/// The value of cookie `name` in the request, if any (the first one wins).
pub(crate) fn find(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// Whether `name` can be a cookie name (an RFC 6265 token): then every `Set-Cookie` the layer
/// writes is a valid header value.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether the request reached the app over HTTPS, directly or through a proxy that says so.
pub(crate) fn is_https(headers: &HeaderMap, uri: &http::Uri) -> bool {
    if uri.scheme_str() == Some("https") {
        return true;
    }
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value for `set`. An issued id has no `Max-Age`: the store decides expiry.
pub(crate) fn render(config: &SessionConfig, set: &SetCookie, https: bool) -> String {
    match set {
        SetCookie::Issue(id) => {
            format!("{}={id}{}", config.cookie_name(), attributes(config, https))
        }
        SetCookie::Remove => format!(
            "{}=; Max-Age=0{}",
            config.cookie_name(),
            attributes(config, https)
        ),
    }
}

fn attributes(config: &SessionConfig, https: bool) -> String {
    let secure = match config.secure {
        // `__Host-` cookies are rejected by browsers without `Secure`.
        _ if config.host_prefix => true,
        SecurePolicy::Always => true,
        SecurePolicy::Never => false,
        SecurePolicy::Auto => https,
    };
    format!(
        "; Path=/; HttpOnly; SameSite={}{}",
        config.same_site.as_str(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; shoal_session=abc; b=2".parse().unwrap());
        assert_eq!(find(&h, "shoal_session").as_deref(), Some("abc"));
        assert_eq!(find(&h, "missing"), None);
    }

    #[test]
    fn cookie_names_are_tokens() {
        assert!(is_valid_name("shoal_session"));
        assert!(is_valid_name("__Host-app.sid"));
        for bad in ["", "a b", "a;b", "a=b", "é", "a\r\n"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_proto_https_means_secure() {
        let mut h = HeaderMap::new();
        let uri: http::Uri = "/".parse().unwrap();
        assert!(!is_https(&h, &uri));
        h.insert("x-forwarded-proto", "HTTPS, http".parse().unwrap());
        assert!(is_https(&h, &uri));
    }
}
