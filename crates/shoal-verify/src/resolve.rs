//! One replay of one scenario as a client: substitutes `{{…}}` into each request, keeps the
//! cookie jar, the values captured from answers and the named requests, and remembers the
//! random values it made up (`$guid`…) so that the comparison can recognise them in answers.
//!
//! File variables are evaluated once per replay, at their first use: `@user = u-{{$guid}}`
//! is one user for the whole replay, and another one in the next replay.
//!
//! Encoding: in a form body (`application/x-www-form-urlencoded`) a substituted value is
//! percent-encoded, so a captured token with `+`, `/` or `=` arrives intact; in a URL, only
//! characters that cannot appear in a URL are; `{{%name}}` percent-encodes anywhere. Text
//! written in the scenario is sent as written.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde_json::Value;

use crate::client::{Answer, Outgoing};
use crate::cookies::CookieJar;
use crate::jsonpath;
use crate::scenario::check::{BASE_URL, MAX_NESTING, app_path};
use crate::scenario::include;
use crate::scenario::{
    BodyLine, BodyPath, Capture, CaptureFrom, Expr, Piece, RequestSpec, Scenario, Side, Source,
    System, Template,
};

/// The most a substituted text (a file variable's value, a line, a whole body) may grow to:
/// the bound of an included file. Variables made of variables double at each level
/// (`@b = {{a}}{{a}}`), so a short file can otherwise ask for more memory than there is.
const MAX_SUBSTITUTED_BYTES: usize = include::MAX_INCLUDE_BYTES as usize;

/// Why a request could not be built, or a capture found nothing; `line` is in the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolveError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// How substituted values are encoded where they land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// As they are (headers, JSON and text bodies).
    None,
    /// Characters that cannot appear in a URL.
    Url,
    /// Everything but unreserved characters (form bodies).
    Component,
}

/// A request as sent and its answer, if any.
#[derive(Debug, Clone)]
struct Exchange {
    request: Outgoing,
    answer: Option<Answer>,
}

/// The state of one client during one replay.
pub(crate) struct Replay<'s> {
    scenario: &'s Scenario,
    public_port: u16,
    dotenv: &'s BTreeMap<String, String>,
    variables: HashMap<String, String>,
    captured: HashMap<String, String>,
    named: HashMap<String, Exchange>,
    generated: Vec<String>,
    jar: CookieJar,
    /// [`MAX_SUBSTITUTED_BYTES`], lower in tests.
    limit: usize,
}

impl<'s> Replay<'s> {
    pub(crate) fn new(
        scenario: &'s Scenario,
        public_port: u16,
        dotenv: &'s BTreeMap<String, String>,
    ) -> Self {
        Replay {
            scenario,
            public_port,
            dotenv,
            variables: HashMap::new(),
            captured: HashMap::new(),
            named: HashMap::new(),
            generated: Vec::new(),
            jar: CookieJar::default(),
            limit: MAX_SUBSTITUTED_BYTES,
        }
    }

    /// Lowers the bound of substituted text, so that tests of it stay small.
    #[cfg(test)]
    pub(crate) fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Random values made up so far, in the order they were made.
    pub(crate) fn generated(&self) -> &[String] {
        &self.generated
    }

    /// `spec` with everything substituted, and the jar's cookies.
    pub(crate) fn build(&mut self, spec: &RequestSpec) -> Result<Outgoing, ResolveError> {
        // Characters that cannot appear in a URL are encoded, wherever they come from.
        let url = encode_as(&self.render(&spec.target, Encoding::None)?, Encoding::Url);
        let path = app_path(&url, self.public_port).map_err(|message| ResolveError {
            line: spec.line,
            message,
        })?;
        let mut headers = Vec::new();
        for (name, value) in &spec.headers {
            headers.push((name.clone(), self.render(value, Encoding::None)?));
        }
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .unwrap_or_default();
        let body = self.body(&spec.body, &content_type)?;
        if !spec.no_cookie_jar
            && let Some(cookies) = self.jar.header_for(&path)
        {
            match headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            {
                Some((_, written)) => *written = format!("{written}; {cookies}"),
                None => headers.push(("Cookie".into(), cookies)),
            }
        }
        Ok(Outgoing {
            method: spec.method.clone(),
            path,
            headers,
            body,
        })
    }

    /// Takes in the answer to `request` (built from `spec`): its cookies, its captures, and the
    /// exchange itself when the request is named. Returns the captures that found nothing.
    pub(crate) fn record(
        &mut self,
        spec: &RequestSpec,
        request: &Outgoing,
        answer: Option<&Answer>,
    ) -> Vec<ResolveError> {
        let mut failed = Vec::new();
        if let Some(answer) = answer {
            if !spec.no_cookie_jar {
                for value in answer.headers_named("set-cookie") {
                    self.jar.store(&request.path, value);
                }
            }
            for capture in &spec.captures {
                match take(capture, answer) {
                    Ok(value) => {
                        self.captured.insert(capture.name.clone(), value);
                    }
                    Err(message) => {
                        self.captured.remove(&capture.name);
                        failed.push(ResolveError {
                            line: capture.line,
                            message,
                        });
                    }
                }
            }
        } else {
            for capture in &spec.captures {
                self.captured.remove(&capture.name);
            }
        }
        if let Some(name) = &spec.name {
            self.named.insert(
                name.clone(),
                Exchange {
                    request: request.clone(),
                    answer: answer.cloned(),
                },
            );
        }
        failed
    }

    fn body(&mut self, lines: &[BodyLine], content_type: &str) -> Result<Vec<u8>, ResolveError> {
        let (separator, encoding): (&[u8], Encoding) = if content_type.starts_with("multipart/") {
            (b"\r\n", Encoding::None)
        } else if content_type.contains("x-www-form-urlencoded") {
            (b"", Encoding::Component)
        } else {
            (b"\n", Encoding::None)
        };
        let mut body = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(separator);
            }
            match line {
                BodyLine::Text(template) => {
                    let text = self.render(template, encoding)?;
                    if encoding == Encoding::Component {
                        body.extend_from_slice(text.trim().as_bytes());
                    } else {
                        body.extend_from_slice(text.as_bytes());
                    }
                }
                BodyLine::Include {
                    path,
                    substitute,
                    line,
                } => {
                    let bytes = include::read(path).map_err(|err| ResolveError {
                        line: *line,
                        message: err.to_string(),
                    })?;
                    if *substitute {
                        let text = String::from_utf8_lossy(&bytes);
                        let template =
                            Template::parse(&text, *line).map_err(|message| ResolveError {
                                line: *line,
                                message,
                            })?;
                        body.extend_from_slice(self.render(&template, encoding)?.as_bytes());
                    } else {
                        body.extend_from_slice(&bytes);
                    }
                }
            }
            if body.len() > self.limit {
                let line = match line {
                    BodyLine::Text(template) => template.line,
                    BodyLine::Include { line, .. } => *line,
                };
                return Err(too_large(line, self.limit));
            }
        }
        Ok(body)
    }

    fn render(&mut self, template: &Template, encoding: Encoding) -> Result<String, ResolveError> {
        let mut out = String::new();
        for piece in &template.pieces {
            match piece {
                Piece::Text(text) => push_bounded(&mut out, text, template.line, self.limit)?,
                Piece::Expr { expr, encode } => {
                    let value = self.value(expr, template.line, 0)?;
                    let encoding = if *encode {
                        Encoding::Component
                    } else {
                        encoding
                    };
                    push_bounded(
                        &mut out,
                        &encode_as(&value, encoding),
                        template.line,
                        self.limit,
                    )?;
                }
            }
        }
        Ok(out)
    }

    fn value(&mut self, expr: &Expr, line: usize, depth: usize) -> Result<String, ResolveError> {
        let error = |message: String| ResolveError { line, message };
        match expr {
            Expr::Var(name) if name == BASE_URL => {
                Ok(format!("http://127.0.0.1:{}", self.public_port))
            }
            Expr::Var(name) => {
                if let Some(value) = self.captured.get(name) {
                    return Ok(value.clone());
                }
                if let Some(value) = self.variables.get(name) {
                    return Ok(value.clone());
                }
                let scenario = self.scenario;
                let variable = scenario.variables.iter().find(|v| &v.name == name);
                match variable {
                    Some(variable) if depth < MAX_NESTING => {
                        let mut out = String::new();
                        for piece in &variable.value.pieces {
                            match piece {
                                Piece::Text(text) => {
                                    push_bounded(&mut out, text, line, self.limit)?
                                }
                                Piece::Expr { expr, encode } => {
                                    let value = self.value(expr, line, depth + 1)?;
                                    let encoding = if *encode {
                                        Encoding::Component
                                    } else {
                                        Encoding::None
                                    };
                                    push_bounded(
                                        &mut out,
                                        &encode_as(&value, encoding),
                                        line,
                                        self.limit,
                                    )?;
                                }
                            }
                        }
                        self.variables.insert(name.clone(), out.clone());
                        Ok(out)
                    }
                    _ => Err(error(format!(
                        "`{{{{{name}}}}}` has no value: the request that captures it found nothing"
                    ))),
                }
            }
            Expr::Request { name, side, source } => {
                let exchange = self.named.get(name).ok_or_else(|| {
                    error(format!(
                        "`{}`: request `{name}` was not sent",
                        expr.display()
                    ))
                })?;
                let (headers, body): (&[(String, String)], &[u8]) = match side {
                    Side::Request => (&exchange.request.headers, &exchange.request.body),
                    Side::Response => match &exchange.answer {
                        Some(answer) => (&answer.headers, &answer.body),
                        None => {
                            return Err(error(format!(
                                "`{}`: request `{name}` got no answer",
                                expr.display()
                            )));
                        }
                    },
                };
                match source {
                    Source::Header(header) => headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(header))
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| {
                            error(format!(
                                "`{}`: the header `{header}` is missing",
                                expr.display()
                            ))
                        }),
                    Source::Body(BodyPath::Whole) => Ok(String::from_utf8_lossy(body).into_owned()),
                    Source::Body(BodyPath::Json(path)) => {
                        let json: Value = serde_json::from_slice(body).map_err(|_| {
                            error(format!("`{}`: the body is not JSON", expr.display()))
                        })?;
                        path.find(&json).map(jsonpath::as_text).ok_or_else(|| {
                            error(format!(
                                "`{}`: nothing at `{path}` in the body",
                                expr.display()
                            ))
                        })
                    }
                }
            }
            Expr::System(system) => Ok(self.system(system)),
        }
    }

    fn system(&mut self, system: &System) -> String {
        let value = match system {
            System::Guid => {
                let bits = fastrand::u128(..);
                let hex = format!("{bits:032x}");
                // Version 4, variant 1.
                format!(
                    "{}-{}-4{}-{:x}{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[13..16],
                    8 + (bits % 4),
                    &hex[17..20],
                    &hex[20..32]
                )
            }
            System::RandomInt(min, max) => fastrand::i64(*min..*max).to_string(),
            System::Timestamp => crate::clock::now_secs().to_string(),
            System::IsoTimestamp => crate::clock::iso8601(crate::clock::now_secs()),
            System::Rfc1123 => crate::clock::rfc1123(crate::clock::now_secs()),
            System::ProcessEnv(name) => std::env::var(name).unwrap_or_default(),
            System::Dotenv(name) => self.dotenv.get(name).cloned().unwrap_or_default(),
        };
        if matches!(system, System::Guid | System::RandomInt(..)) && value.len() >= 6 {
            self.generated.push(value.clone());
        }
        value
    }
}

/// The value a capture takes from `answer`.
fn take(capture: &Capture, answer: &Answer) -> Result<String, String> {
    let first = |regex: &Regex, text: &str| {
        regex.captures(text).map(|found| {
            found
                .get(1)
                .or_else(|| found.get(0))
                .map_or(String::new(), |m| m.as_str().to_owned())
        })
    };
    match &capture.from {
        CaptureFrom::Body(regex) => {
            let text = String::from_utf8_lossy(&answer.body);
            let html = answer
                .header("content-type")
                .is_some_and(|t| t.to_ascii_lowercase().contains("html"));
            first(regex, &text)
                .map(|value| if html { unescape_html(&value) } else { value })
                .ok_or_else(|| {
                    format!(
                        "`@capture {}`: `{}` matches nothing in the body (status {})",
                        capture.name,
                        regex.as_str(),
                        answer.status
                    )
                })
        }
        CaptureFrom::Header(name, regex) => {
            let value = answer.header(name).ok_or_else(|| {
                format!(
                    "`@capture {}`: the answer (status {}) has no `{name}` header",
                    capture.name, answer.status
                )
            })?;
            match regex {
                None => Ok(value.to_owned()),
                Some(regex) => first(regex, value).ok_or_else(|| {
                    format!(
                        "`@capture {}`: `{}` matches nothing in `{name}: {value}`",
                        capture.name,
                        regex.as_str()
                    )
                }),
            }
        }
        CaptureFrom::Json(path) => {
            let json: Value = serde_json::from_slice(&answer.body).map_err(|_| {
                format!(
                    "`@capture {}`: the body (status {}) is not JSON",
                    capture.name, answer.status
                )
            })?;
            path.find(&json).map(jsonpath::as_text).ok_or_else(|| {
                format!(
                    "`@capture {}`: nothing at `{path}` in the body (status {})",
                    capture.name, answer.status
                )
            })
        }
    }
}

/// Decodes the character references an HTML attribute value may hold.
fn unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Appends `text` unless `out` would grow past `limit`.
fn push_bounded(
    out: &mut String,
    text: &str,
    line: usize,
    limit: usize,
) -> Result<(), ResolveError> {
    if out.len() + text.len() > limit {
        return Err(too_large(line, limit));
    }
    out.push_str(text);
    Ok(())
}

fn too_large(line: usize, limit: usize) -> ResolveError {
    let limit = if limit >= 1 << 20 {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit} bytes")
    };
    ResolveError {
        line,
        message: format!(
            "with its variables substituted, this grows past {limit}; expected at most {limit}"
        ),
    }
}

fn encode_as(value: &str, encoding: Encoding) -> String {
    let keep = |b: u8| match encoding {
        Encoding::None => true,
        Encoding::Url => b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b),
        Encoding::Component => b.is_ascii_alphanumeric() || b"-._~".contains(&b),
    };
    if value.bytes().all(keep) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(encode_as("a b+c/=", Encoding::Component), "a%20b%2Bc%2F%3D");
        assert_eq!(encode_as("/a b?x=1&y", Encoding::Url), "/a%20b?x=1&y");
        assert_eq!(encode_as("é", Encoding::Url), "%C3%A9");
        assert_eq!(encode_as("a b", Encoding::None), "a b");
    }

    #[test]
    fn html_references_are_decoded() {
        assert_eq!(unescape_html("a&amp;b&#43;c&#x2F;d&quot;"), "a&b+c/d\"");
        assert_eq!(unescape_html("x & y &unknown; z"), "x & y &unknown; z");
    }
}
