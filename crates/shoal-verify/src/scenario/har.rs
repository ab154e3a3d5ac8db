//! HAR 1.2 files, as a browser's developer tools export them. The app's host is the host of
//! the first request; its requests are replayed with the recorded method, path, query,
//! headers and body, against the formation instead. Requests to other hosts (fonts, analytics,
//! CDNs) are left out and listed in the scenario's notes, as are requests that never got an
//! answer when they were recorded.
//!
//! Recorded cookies are not sent (verify's client has its own cookie jar, so each replay is a
//! fresh visitor), nor are headers that belong to the recorded connection or cache (`Host`,
//! `Content-Length`, `Connection`, `Accept-Encoding`, `If-None-Match`, `If-Modified-Since`,
//! HTTP/2 pseudo-headers). `Origin` and `Referer` are pointed at the formation. Bodies are sent
//! exactly as recorded: `{{…}}` in them is not substituted, and a CSRF token recorded in a form
//! is sent as it was (write an `.http` scenario with `# @capture` for such forms).

use std::path::Path;

use serde::Deserialize;

use super::template::{Expr, Piece, Template};
use super::{BodyLine, RequestSpec, Scenario};
use crate::error::ScenarioError;

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    request: Request,
    #[serde(default)]
    response: Option<Response>,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(rename = "postData", default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    status: i64,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct PostData {
    #[serde(rename = "mimeType", default)]
    mime_type: String,
    #[serde(default)]
    text: Option<String>,
}

/// Headers not replayed: they describe the recorded connection, its cookies or its cache.
const DROPPED: [&str; 11] = [
    "host",
    "cookie",
    "content-length",
    "connection",
    "keep-alive",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Parses the HAR text of `path`.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let har: Har = serde_json::from_str(text).map_err(|err| ScenarioError::At {
        path: path.to_path_buf(),
        line: err.line(),
        message: format!("not a HAR file: {err}"),
    })?;
    let file_error = |message: String| ScenarioError::File {
        path: path.to_path_buf(),
        message,
    };
    let mut requests = Vec::new();
    let mut app_origin: Option<String> = None;
    let mut elsewhere: Vec<String> = Vec::new();
    let mut unanswered = 0;
    for (number, entry) in har.log.entries.iter().enumerate() {
        let number = number + 1;
        let (origin, path_and_query) = split_url(&entry.request.url).ok_or_else(|| {
            file_error(format!(
                "entry {number}: `{}` is not an http(s) URL",
                entry.request.url
            ))
        })?;
        let app = app_origin.get_or_insert_with(|| origin.clone());
        if *app != origin {
            if !elsewhere.contains(&origin) {
                elsewhere.push(origin);
            }
            continue;
        }
        if entry.response.as_ref().is_some_and(|r| r.status <= 0) {
            unanswered += 1;
            continue;
        }
        let method = entry.request.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(file_error(format!(
                "entry {number}: `{}` is not an HTTP method",
                entry.request.method
            )));
        }
        let mut headers = Vec::new();
        for header in &entry.request.headers {
            let name = header.name.to_ascii_lowercase();
            if name.starts_with(':') || DROPPED.contains(&name.as_str()) {
                continue;
            }
            let value = match header.value.strip_prefix(app.as_str()) {
                Some(rest) if name == "origin" || name == "referer" => Template {
                    pieces: vec![
                        Piece::Expr {
                            expr: Expr::Var("baseUrl".into()),
                            encode: false,
                        },
                        Piece::Text(rest.to_owned()),
                    ],
                    raw: format!("{{{{baseUrl}}}}{rest}"),
                    line: number,
                },
                _ => Template::literal(header.value.clone(), number),
            };
            headers.push((header.name.clone(), value));
        }
        let mut body = Vec::new();
        if let Some(post) = &entry.request.post_data {
            if let Some(text) = &post.text {
                body.push(BodyLine::Text(Template::literal(text.clone(), number)));
            }
            let has_type = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
            if !has_type && !post.mime_type.is_empty() {
                headers.push((
                    "Content-Type".into(),
                    Template::literal(post.mime_type.clone(), number),
                ));
            }
        }
        requests.push(RequestSpec {
            index: requests.len() + 1,
            line: number,
            name: None,
            title: None,
            method,
            target: Template::literal(path_and_query, number),
            headers,
            body,
            captures: Vec::new(),
            until: None,
            timeout: None,
            no_cookie_jar: false,
        });
    }
    if requests.is_empty() {
        return Err(file_error(
            "no requests to replay: the HAR file has no answered entries".into(),
        ));
    }
    let mut notes = Vec::new();
    if !elsewhere.is_empty() {
        notes.push(format!(
            "left out the requests to other hosts than `{}`: {}",
            app_origin.unwrap_or_default(),
            elsewhere.join(", ")
        ));
    }
    if unanswered > 0 {
        notes.push(format!(
            "left out {unanswered} request(s) that got no answer when they were recorded"
        ));
    }
    Ok(Scenario {
        path: path.to_path_buf(),
        variables: Vec::new(),
        requests,
        notes,
    })
}

/// `https://host:port/a?b` → (`https://host:port`, `/a?b`).
fn split_url(url: &str) -> Option<(String, String)> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let rest = &url[scheme_end + 3..];
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = url[..scheme_end + 3 + path_start].to_ascii_lowercase();
    let mut path = rest[path_start..].to_owned();
    if let Some(hash) = path.find('#') {
        path.truncate(hash);
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    Some((origin, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_origin_and_path() {
        assert_eq!(
            split_url("https://Shop.example:8443/cart?x=1#top"),
            Some(("https://shop.example:8443".into(), "/cart?x=1".into()))
        );
        assert_eq!(
            split_url("http://a.test"),
            Some(("http://a.test".into(), "/".into()))
        );
        assert_eq!(split_url("ws://a.test/x"), None);
        assert_eq!(split_url("data:text/plain,hi"), None);
    }
}
