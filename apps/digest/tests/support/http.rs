//! A small HTTP/1.1 client over hyper with a cookie jar: one connection per request, as a
//! browser talking through a router would see it (no affinity of any kind).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A finished response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client of one server, keeping the cookies it is given.
pub(crate) struct Client {
    addr: SocketAddr,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    /// Sends a request; connection failures are errors.
    pub(crate) async fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.addr.port()));
        let cookie_header = {
            let jar = self.cookies.lock().unwrap();
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie_header.is_empty() {
            request = request.header("cookie", cookie_header);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        self.keep_cookies(&parts.headers);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn keep_cookies(&self, headers: &HeaderMap) {
        let mut jar = self.cookies.lock().unwrap();
        for value in headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v: &HeaderValue| v.to_str().ok())
        {
            let mut attributes = value.split(';').map(str::trim);
            let Some((name, val)) = attributes.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let removed = val.is_empty() || attributes.any(|a| a.eq_ignore_ascii_case("max-age=0"));
            if removed {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), val.to_owned());
            }
        }
    }

    /// Sends a request; panics when the connection fails.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], Vec::new()).await
    }

    /// An API call: JSON body and the `X-Requested-With` header the API requires.
    pub(crate) async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let mut headers = vec![
            ("x-requested-with", "digest-tests"),
            ("accept", "application/json"),
        ];
        let body = match body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(&b).unwrap()
            }
            None => Vec::new(),
        };
        self.send(method, path, &headers, body).await
    }

    /// A form post (`application/x-www-form-urlencoded`).
    pub(crate) async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.into_bytes(),
        )
        .await
    }

    /// A multipart post: text fields, then one file field named `file`.
    pub(crate) async fn multipart(
        &self,
        path: &str,
        extra_headers: &[(&str, &str)],
        fields: &[(&str, &str)],
        file_name: &str,
        content: &[u8],
    ) -> Reply {
        let boundary = "digest-test-boundary-7d1f0c";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let mut headers = vec![("content-type", content_type.as_str())];
        headers.extend_from_slice(extra_headers);
        self.send("POST", path, &headers, body).await
    }
}

/// Percent-encoding for form values.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden `csrf` field in a page.
pub(crate) fn csrf_field(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in the page:\n{page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}
