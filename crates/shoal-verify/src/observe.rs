//! What verify compares of an answer: the status, `Location`, `Content-Type`, the names of the
//! cookies it sets, and the body — as JSON when it is JSON, as lines when it is text, as a
//! length and a hash otherwise.
//!
//! Before anything is compared, the answer is normalised, so that what is expected to differ
//! between runs never counts: the random values the client itself made up (`{{$guid}}`…) and
//! the identity of the instance that answered (its name such as `web.2`, its port and pid)
//! become placeholders. An app that shows which process served a request is not keeping state.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::client::Answer;
use crate::cookies::set_cookie_name;
use crate::lines::split_lines;

/// An answer, or the lack of one, as compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `None` when there was no answer.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub cookies: BTreeSet<String>,
    pub body: Body,
}

/// A body, in the form it is compared in.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Empty,
    Json(Value),
    Text(Vec<String>),
    Binary { len: usize, hash: u64 },
}

/// Who answered, and what the client made up: the parts of an answer that are expected to
/// differ between runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalizer<'a> {
    /// Random values the client made up, in the order it made them.
    pub(crate) generated: &'a [String],
    /// The instance's name, e.g. `web.2`.
    pub(crate) instance: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) pid: Option<u32>,
}

impl Normalizer<'_> {
    /// `text` with the instance's identity and the generated values as placeholders.
    pub(crate) fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Longest first, so that a value that contains another is replaced whole.
        let mut generated: Vec<(usize, &String)> = self.generated.iter().enumerate().collect();
        generated.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (i, value) in generated {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("{{{{generated#{}}}}}", i + 1));
            }
        }
        if let Some(name) = &self.instance {
            out = replace_word(&out, name, "{{instance}}");
        }
        if let Some(port) = self.port {
            out = replace_word(&out, &port.to_string(), "{{port}}");
        }
        if let Some(pid) = self.pid {
            out = replace_word(&out, &pid.to_string(), "{{pid}}");
        }
        out
    }

    fn json(&self, value: Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Number(n) => {
                let as_u64 = n.as_u64();
                if as_u64.is_some() && as_u64 == self.pid.map(u64::from) {
                    Value::String("{{pid}}".into())
                } else if as_u64.is_some() && as_u64 == self.port.map(u64::from) {
                    Value::String("{{port}}".into())
                } else {
                    Value::Number(n)
                }
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// The observation of `answer` (or of its absence, `error`).
    pub(crate) fn observe(&self, answer: Result<&Answer, &str>) -> Observation {
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                return Observation {
                    status: None,
                    error: Some(error.to_owned()),
                    location: None,
                    content_type: None,
                    cookies: BTreeSet::new(),
                    body: Body::Empty,
                };
            }
        };
        let content_type = answer.header("content-type").map(normalize_content_type);
        Observation {
            status: Some(answer.status),
            error: None,
            location: answer.header("location").map(|l| self.text(l)),
            cookies: answer
                .headers_named("set-cookie")
                .filter_map(set_cookie_name)
                .map(str::to_owned)
                .collect(),
            body: self.body(&answer.body, content_type.as_deref().unwrap_or("")),
            content_type,
        }
    }

    fn body(&self, bytes: &[u8], content_type: &str) -> Body {
        if bytes.is_empty() {
            return Body::Empty;
        }
        let jsonish = content_type.contains("json")
            || (content_type.is_empty()
                && matches!(
                    bytes.iter().find(|b| !b.is_ascii_whitespace()),
                    Some(b'{' | b'[')
                ));
        if jsonish && let Ok(value) = serde_json::from_slice::<Value>(bytes) {
            return Body::Json(self.json(value));
        }
        let texty = content_type.starts_with("text/")
            || [
                "json",
                "xml",
                "html",
                "javascript",
                "x-www-form-urlencoded",
                "csv",
                "yaml",
            ]
            .iter()
            .any(|t| content_type.contains(t));
        match std::str::from_utf8(bytes) {
            Ok(text) if texty || content_type.is_empty() || !text.contains('\0') => {
                Body::Text(split_lines(&self.text(text)))
            }
            _ => Body::Binary {
                len: bytes.len(),
                hash: shoal_supervisor::scratch::fnv1a(bytes),
            },
        }
    }
}

/// `text/html; charset=UTF-8` → `text/html;charset=utf-8`; a multipart boundary is left out.
fn normalize_content_type(value: &str) -> String {
    value
        .split(';')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty() && !p.starts_with("boundary="))
        .collect::<Vec<_>>()
        .join(";")
}

/// Replaces `word` where it stands alone (not inside a longer word or number).
fn replace_word(text: &str, word: &str, with: &str) -> String {
    if word.is_empty() || !text.contains(word) {
        return text.to_owned();
    }
    let inside = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(word) {
        let prev = rest[..at].chars().next_back().or(before);
        let next = rest[at + word.len()..].chars().next();
        // `web.2` stands alone in `web.2.` but not in `web.20`; pid 247 stands alone in
        // `pid 247.` but not in `0.247 ms`.
        let next_inside = inside(next)
            || (next == Some('.')
                && rest[at + word.len() + 1..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit()));
        out.push_str(&rest[..at]);
        let prev_inside = inside(prev)
            || (prev == Some('.') && out.chars().rev().nth(1).is_some_and(|c| c.is_ascii_digit()));
        if prev_inside || next_inside {
            out.push_str(word);
        } else {
            out.push_str(with);
        }
        before = word.chars().next_back();
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_generated_values_become_placeholders() {
        let generated = vec!["u-1234567".to_owned()];
        let n = Normalizer {
            generated: &generated,
            instance: Some("web.2".into()),
            port: Some(5101),
            pid: Some(4242),
        };
        assert_eq!(
            n.text("hi u-1234567 from web.2 (pid 4242, port 5101); web.20 51010"),
            "hi {{generated#1}} from {{instance}} (pid {{pid}}, port {{port}}); web.20 51010"
        );
        assert_eq!(n.text("served by web.2."), "served by {{instance}}.");
        let small = Normalizer {
            pid: Some(247),
            ..Normalizer::default()
        };
        assert_eq!(
            small.text("pid 247. rendered in 0.247 ms, v1.247.3"),
            "pid {{pid}}. rendered in 0.247 ms, v1.247.3"
        );
    }

    #[test]
    fn bodies_are_classified() {
        let n = Normalizer::default();
        assert_eq!(n.body(b"", "text/html"), Body::Empty);
        assert!(matches!(
            n.body(b"{\"a\":1}", "application/json"),
            Body::Json(_)
        ));
        assert!(matches!(n.body(b" [1]", ""), Body::Json(_)));
        assert_eq!(
            n.body(b"a\r\nb\n", "text/plain"),
            Body::Text(vec!["a".into(), "b".into()])
        );
        assert!(matches!(
            n.body(b"\x89PNG\0\0", "image/png"),
            Body::Binary { len: 6, .. }
        ));
        assert_eq!(
            normalize_content_type("multipart/form-data; boundary=xyz; Charset=UTF-8"),
            "multipart/form-data;charset=utf-8"
        );
    }
}
