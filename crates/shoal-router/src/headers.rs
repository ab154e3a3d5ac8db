//! Request and response headers: hop-by-hop headers removed in both directions, forwarding
//! headers set, request ids kept or made, and request framing that could be used to smuggle a
//! request refused.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and so are never
/// forwarded. Headers named in `Connection` are removed too. (`Trailer` is not one of them: it
/// announces the message's trailer fields, and HTTP/1.1 only sends those it announces.)
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");

/// Removes hop-by-hop headers. For an upgrade (`upgrade = true`), `Connection: upgrade` and
/// `Upgrade` are what the upgrade is made of, so they stay. `TE: trailers` stays on requests:
/// it tells the instance the client accepts trailers.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages have none: one pass over the names finds that out.
    if !upgrade && !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let trailers_ok = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        if upgrade && (name == header::UPGRADE || name == header::CONNECTION) {
            continue;
        }
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if trailers_ok {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A client's address as it appears in `X-Forwarded-For` and in the access log; made once per
/// connection (cloning it costs no copy).
pub(crate) fn client_address(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(ip.to_string()))
        .expect("an IP address is a valid header value")
}

/// Sets the forwarding headers on a request: the client's address appended to
/// `X-Forwarded-For` (whatever the client sent stays in front of it: only the last entry is
/// known to be true), and `X-Forwarded-Proto`, `-Host` and `-Port` replaced. Look-alikes of
/// forwarding headers spelt with underscores are removed first (see [`is_forwarding_alias`]).
pub(crate) fn set_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    public_port: &HeaderValue,
    request_id: &HeaderValue,
) {
    // Almost no request has a name with an underscore: one pass over the names finds that out.
    if headers.keys().any(|name| name.as_str().contains('_')) {
        let aliases: Vec<HeaderName> = headers
            .keys()
            .filter(|name| is_forwarding_alias(name.as_str()))
            .cloned()
            .collect();
        for name in aliases {
            headers.remove(name);
        }
    }
    let mut chain = client.clone();
    if headers.contains_key(X_FORWARDED_FOR) {
        let mut earlier: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        earlier.push(client.to_str().unwrap_or_default());
        if let Ok(value) = HeaderValue::from_str(&earlier.join(", ")) {
            chain = value;
        }
    }
    headers.insert(X_FORWARDED_FOR, chain);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match headers.get(header::HOST).cloned() {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
    headers.insert(X_FORWARDED_PORT, public_port.clone());
    headers.insert(X_REQUEST_ID, request_id.clone());
}

/// Sets `X-Request-Start: t=MICROSECONDS` (since the Unix epoch), the time the router received
/// the request, unless the client sent one: New Relic, Scout, Judoscale and Rails' queue-time
/// middleware read it to tell the time a request waited before the app from the time it took.
pub(crate) fn set_request_start(headers: &mut HeaderMap, received: std::time::SystemTime) {
    if headers.contains_key(X_REQUEST_START) {
        return;
    }
    let micros = received
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut value = String::with_capacity(20);
    value.push_str("t=");
    value.push_str(itoa::Buffer::new().format(micros));
    headers.insert(
        X_REQUEST_START,
        HeaderValue::from_str(&value).expect("digits are a valid header value"),
    );
}

/// Whether `name` has an underscore and means a forwarding header once `_` is read as `-`.
/// CGI, WSGI, Rack and PHP turn both `-` and `_` into `_` (`HTTP_X_FORWARDED_FOR`), so a client
/// sending `X_Forwarded_For` would add its own entries after the router's, and an app that trusts
/// the last entry would believe them. nginx drops every name with an underscore by default, and
/// gunicorn refuses them; shoal drops those that could pass for a header the router vouches for.
fn is_forwarding_alias(name: &str) -> bool {
    if !name.contains('_') {
        return false;
    }
    let dashed = name.replace('_', "-");
    dashed.starts_with("x-forwarded-")
        || matches!(
            dashed.as_str(),
            "forwarded" | "x-real-ip" | "x-client-ip" | "x-request-id" | "client-ip"
        )
}

/// The request's id: the client's `X-Request-Id` when it is 20 to 200 characters of
/// `[A-Za-z0-9+/=._-]` (as Heroku's router accepts), a new random one otherwise (32 hex
/// digits).
pub(crate) fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(X_REQUEST_ID) {
        Some(id)
            if (20..=200).contains(&id.len())
                && id
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=._-".contains(b)) =>
        {
            id.clone()
        }
        _ => {
            let n = fastrand::u128(..);
            let hex: [u8; 32] =
                std::array::from_fn(|i| b"0123456789abcdef"[(n >> (124 - 4 * i)) as usize & 15]);
            HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&hex))
                .expect("hex digits are a valid header value")
        }
    }
}

/// Refuses request framing that two parsers could read differently (request smuggling):
/// any `Transfer-Encoding` other than a single `chunked`, `Transfer-Encoding` together with
/// `Content-Length`, and several differing `Content-Length` values.
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), &'static str> {
    let codings: Vec<String> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .flat_map(|v| {
            v.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let lengths: Vec<&[u8]> = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if !codings.is_empty() {
        if codings != ["chunked"] {
            return Err("transfer_encoding_not_supported");
        }
        if !lengths.is_empty() {
            return Err("transfer_encoding_with_content_length");
        }
    }
    if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
        return Err("conflicting_content_length");
    }
    Ok(())
}

/// Checks the request's `Host` (RFC 9112 §3.2): an HTTP/1.1 request has exactly one, and it
/// names one host. A request in absolute form (`GET http://other.example/p`) is for the host in
/// its target, whatever its `Host` said (§3.2.2), so `Host` is replaced by it.
pub(crate) fn check_host<B>(request: &mut http::Request<B>) -> Result<(), &'static str> {
    if let Some(authority) = request.uri().authority() {
        if authority.as_str().contains('@') {
            return Err("invalid_host");
        }
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| "invalid_host")?;
        request.headers_mut().insert(header::HOST, host);
        return Ok(());
    }
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if request.version() == http::Version::HTTP_11 => Err("missing_host"),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err("conflicting_host"),
        (Some(host), None) if is_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err("invalid_host"),
    }
}

/// `uri-host [ ":" port ]`, or empty (RFC 9112 §3.2): no list, no user information, no spaces,
/// and a port of digits.
fn is_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let port = match text.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((_, "")) => "",
            Some((_, rest)) => match rest.strip_prefix(':') {
                Some(port) => port,
                None => return false,
            },
            None => return false,
        },
        None => text.rsplit_once(':').map_or("", |(_, port)| port),
    };
    port.bytes().all(|b| b.is_ascii_digit())
        && !value
            .iter()
            .any(|b| matches!(b, b',' | b'@' | b' ' | b'\t' | b'/' | b'?' | b'#'))
        && text.parse::<http::uri::Authority>().is_ok()
}

/// Replaces a `Content-Length` given as a list or several times (`5, 5`: the same value, or the
/// response would have been refused) by the one value, as RFC 9110 §8.6 allows a recipient to,
/// so that no client downstream has to know the rule.
pub(crate) fn normalize_content_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let (Some(first), second) = (values.next(), values.next()) else {
        return;
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return;
    }
    let single = first
        .as_bytes()
        .split(|&b| b == b',')
        .next()
        .map(<[u8]>::trim_ascii)
        .and_then(|digits| HeaderValue::from_bytes(digits).ok());
    match single {
        Some(value) => headers.insert(header::CONTENT_LENGTH, value),
        None => headers.remove(header::CONTENT_LENGTH),
    };
}

/// Whether a message names a transfer coding other than `chunked` (`gzip`, `gzip, chunked`…).
pub(crate) fn has_coding_other_than_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    fn host_check(
        target: &str,
        version: http::Version,
        hosts: &[&str],
    ) -> Result<String, &'static str> {
        let mut request = http::Request::builder().uri(target).version(version);
        for host in hosts {
            request = request.header("host", *host);
        }
        let mut request = request.body(()).unwrap();
        check_host(&mut request)?;
        Ok(request
            .headers()
            .get("host")
            .map(|h| h.to_str().unwrap().to_owned())
            .unwrap_or_default())
    }

    #[test]
    fn host_follows_rfc_9112() {
        use http::Version;
        let v11 = Version::HTTP_11;
        assert_eq!(host_check("/", v11, &["app.test"]), Ok("app.test".into()));
        assert_eq!(
            host_check("/", v11, &["app.test:8080"]),
            Ok("app.test:8080".into())
        );
        assert_eq!(
            host_check("/", v11, &["[::1]:5000"]),
            Ok("[::1]:5000".into())
        );
        assert_eq!(host_check("/", v11, &[""]), Ok(String::new()));
        assert_eq!(host_check("/", v11, &[]), Err("missing_host"));
        assert_eq!(host_check("/", Version::HTTP_10, &[]), Ok(String::new()));
        assert_eq!(host_check("/", v11, &["a", "a"]), Err("conflicting_host"));
        for bad in ["a, b", "a b", "user@a", "a/b", "a:port"] {
            assert_eq!(host_check("/", v11, &[bad]), Err("invalid_host"), "{bad}");
        }
        assert_eq!(
            host_check("http://other.example/p", v11, &["app.test"]),
            Ok("other.example".into())
        );
        assert_eq!(
            host_check("http://other.example:81/p", v11, &[]),
            Ok("other.example:81".into())
        );
    }

    #[test]
    fn a_content_length_list_becomes_one_value() {
        let mut headers = map(&[("content-length", "5, 5")]);
        normalize_content_length(&mut headers);
        assert_eq!(headers["content-length"], "5");
        let mut headers = map(&[("content-length", "7"), ("content-length", "7")]);
        normalize_content_length(&mut headers);
        assert_eq!(headers.get_all("content-length").iter().count(), 1);
        assert_eq!(headers["content-length"], "7");
        let mut headers = map(&[("content-length", "12")]);
        normalize_content_length(&mut headers);
        assert_eq!(headers["content-length"], "12");
    }

    #[test]
    fn codings_other_than_chunked_are_found() {
        for (value, other) in [
            ("chunked", false),
            ("Chunked", false),
            ("gzip", true),
            ("gzip, chunked", true),
            ("chunked, gzip", true),
        ] {
            let headers = map(&[("transfer-encoding", value)]);
            assert_eq!(has_coding_other_than_chunked(&headers), other, "{value}");
        }
        assert!(!has_coding_other_than_chunked(&HeaderMap::new()));
    }

    #[test]
    fn underscore_spellings_of_forwarding_headers_are_dropped() {
        let mut headers = map(&[
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded_proto", "https"),
            ("x_request_id", "forged-forged-forged-forged"),
            ("x_real_ip", "6.6.6.6"),
            ("forwarded", "for=1.1.1.1"),
            ("x_custom_thing", "kept"),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        let id = HeaderValue::from_static("abc");
        set_forwarding(
            &mut headers,
            &client_address("127.0.0.1".parse().unwrap()),
            &HeaderValue::from_static("5000"),
            &id,
        );
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-port",
                "x-forwarded-proto",
                "x-request-id",
                "x_custom_thing"
            ]
        );
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers, deflate"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["te", "x-kept"]);
        assert_eq!(headers["te"], "trailers");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut headers = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert!(!headers.contains_key("keep-alive"));
    }

    #[test]
    fn forwarding_headers_append_and_replace() {
        let mut headers = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("host", "app.test:5000"),
        ]);
        set_forwarding(
            &mut headers,
            &client_address("127.0.0.1".parse().unwrap()),
            &HeaderValue::from(5000),
            &HeaderValue::from_static("abc"),
        );
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.test:5000");
        assert_eq!(headers["x-forwarded-port"], "5000");
        assert_eq!(headers["x-request-id"], "abc");
    }

    #[test]
    fn request_ids_are_kept_only_when_valid() {
        let valid = "0123456789abcdef0123456789";
        assert_eq!(request_id(&map(&[("x-request-id", valid)])), valid);
        assert!(
            request_id(&HeaderMap::new())
                .as_bytes()
                .iter()
                .all(u8::is_ascii_hexdigit)
        );
        for bad in ["short", "has space in it 0123456789", &"x".repeat(201)] {
            let id = request_id(&map(&[("x-request-id", bad)]));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert!(check_framing(&map(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&map(&[("content-length", "5"), ("content-length", "5")])).is_ok());
        for bad in [
            &[("transfer-encoding", "chunked"), ("content-length", "5")][..],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "chunked, gzip")],
            &[("transfer-encoding", "gzip")],
            &[("content-length", "5"), ("content-length", "6")],
        ] {
            assert!(check_framing(&map(bad)).is_err(), "{bad:?}");
        }
    }
}
