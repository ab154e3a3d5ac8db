//! A small YAML emitter for the documents the exporters build: block style, keys in the order
//! given, and every string that a YAML 1.1 or 1.2 parser could read as something else (`yes`,
//! `on`, `null`, `5000`, `1e3`, `2024-01-01`, `a: b`, ` padded`…) double-quoted.
//!
//! It only writes; the tests parse its output back with two independent parsers.

use std::fmt::Write as _;

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Yaml {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub(crate) fn str(value: impl Into<String>) -> Yaml {
        Yaml::Str(value.into())
    }

    /// A map from `(key, value)` pairs, in order.
    pub(crate) fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Yaml)>) -> Yaml {
        Yaml::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A sequence of strings.
    pub(crate) fn strs<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Yaml {
        Yaml::Seq(items.into_iter().map(|s| Yaml::Str(s.into())).collect())
    }

    fn is_collection(&self) -> bool {
        matches!(self, Yaml::Seq(items) if !items.is_empty())
            || matches!(self, Yaml::Map(entries) if !entries.is_empty())
    }
}

impl From<&str> for Yaml {
    fn from(value: &str) -> Self {
        Yaml::Str(value.to_owned())
    }
}

impl From<String> for Yaml {
    fn from(value: String) -> Self {
        Yaml::Str(value)
    }
}

impl From<i64> for Yaml {
    fn from(value: i64) -> Self {
        Yaml::Int(value)
    }
}

impl From<bool> for Yaml {
    fn from(value: bool) -> Self {
        Yaml::Bool(value)
    }
}

/// `node` as one YAML document, ending with a newline.
pub(crate) fn to_string(node: &Yaml) -> String {
    let mut out = String::new();
    match node {
        node if node.is_collection() => block(&mut out, node, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

/// Writes a non-empty collection, each line indented by `indent` spaces.
fn block(out: &mut String, node: &Yaml, indent: usize) {
    let pad = " ".repeat(indent);
    match node {
        Yaml::Map(entries) => {
            for (key, value) in entries {
                let _ = write!(out, "{pad}{}:", scalar(key));
                value_after_key(out, value, indent);
            }
        }
        Yaml::Seq(items) => {
            for item in items {
                let _ = write!(out, "{pad}-");
                match item {
                    // The first entry shares the dash's line; the rest line up under it.
                    Yaml::Map(entries) if !entries.is_empty() => {
                        let (key, value) = &entries[0];
                        let _ = write!(out, " {}:", scalar(key));
                        value_after_key(out, value, indent + 2);
                        block(out, &Yaml::Map(entries[1..].to_vec()), indent + 2);
                    }
                    Yaml::Seq(inner) if !inner.is_empty() => {
                        out.push('\n');
                        block(out, item, indent + 2);
                    }
                    scalar_item => {
                        let _ = writeln!(out, " {}", inline(scalar_item));
                    }
                }
            }
        }
        scalar_node => {
            let _ = writeln!(out, "{pad}{}", inline(scalar_node));
        }
    }
}

/// What follows `key:` of a map entry whose key is indented by `indent`.
fn value_after_key(out: &mut String, value: &Yaml, indent: usize) {
    if value.is_collection() {
        out.push('\n');
        block(out, value, indent + 2);
    } else {
        let _ = writeln!(out, " {}", inline(value));
    }
}

/// A scalar or an empty collection, on one line.
fn inline(node: &Yaml) -> String {
    match node {
        Yaml::Str(s) => scalar(s),
        Yaml::Int(i) => i.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Seq(_) => "[]".to_owned(),
        Yaml::Map(_) => "{}".to_owned(),
    }
}

/// A string as a YAML scalar: plain when no parser can mistake it, double-quoted otherwise.
pub(crate) fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_owned()
    } else {
        double_quoted(s)
    }
}

/// Words that YAML 1.1 (Kubernetes' and PyYAML's parsers) or 1.2 read as booleans or null.
const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    // Starting with a letter, `_` or `/` rules out numbers, dates, indicators (`-`, `?`, `:`,
    // `&`, `*`, `!`, `|`, `>`, `'`, `"`, `%`, `@`, `` ` ``, `#`, `{`, `[`) and `.inf`/`.nan`;
    // leaving out `:` and `#` everywhere rules out `a: b` and `a #comment`.
    (first.is_ascii_alphabetic() || first == '_' || first == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_./-$+=,@% ".contains(c))
        && !s.ends_with(' ')
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Control characters, the characters YAML treats as line breaks or a BOM, and the
            // two it does not allow unescaped.
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The emitted text, parsed back into a JSON value by an independent YAML parser.
    fn parse(text: &str) -> serde_json::Value {
        serde_saphyr::from_str(text).unwrap_or_else(|err| panic!("{err}\n{text}"))
    }

    fn to_json(node: &Yaml) -> serde_json::Value {
        match node {
            Yaml::Str(s) => s.clone().into(),
            Yaml::Int(i) => (*i).into(),
            Yaml::Bool(b) => (*b).into(),
            Yaml::Seq(items) => items.iter().map(to_json).collect(),
            Yaml::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "true",
            "null",
            "",
            "5000",
            "1e3",
            "0x1f",
            "1_000",
            "2024-01-01",
            "12:30",
            "-",
            "- a",
            "a: b",
            "a #b",
            " lead",
            "trail ",
            "~",
            "*x",
            "&x",
            "!x",
            "%x",
            "@x",
            "`x",
            "{a}",
            "[a]",
            "|",
            ">",
            "'",
            "\"",
            ".inf",
            ".5",
            "+1",
            "a\nb",
            "?",
            "<<",
        ] {
            assert!(scalar(s).starts_with('"'), "`{s}` must be quoted");
        }
        for s in [
            "web",
            "app.kubernetes.io/name",
            "exec ./server -p $PORT",
            "sh",
            "/bin/sh",
        ] {
            assert_eq!(scalar(s), s);
        }
    }

    #[test]
    fn block_layout() {
        let doc = Yaml::map([
            ("kind", Yaml::str("Deployment")),
            ("empty", Yaml::Map(vec![])),
            (
                "items",
                Yaml::Seq(vec![
                    Yaml::map([("name", Yaml::str("web")), ("port", Yaml::Int(5000))]),
                    Yaml::strs(["a", "b"]),
                    Yaml::Bool(false),
                ]),
            ),
            ("restart", Yaml::str("no")),
        ]);
        let text = to_string(&doc);
        assert_eq!(
            text,
            "kind: Deployment\nempty: {}\nitems:\n  - name: web\n    port: 5000\n  -\n    - a\n    - b\n  - false\nrestart: \"no\"\n"
        );
        assert_eq!(parse(&text), to_json(&doc));
    }

    fn node() -> impl Strategy<Value = Yaml> {
        let leaf = prop_oneof![
            any::<String>().prop_map(Yaml::Str),
            "[ -~]{0,12}".prop_map(Yaml::Str),
            any::<i64>().prop_map(Yaml::Int),
            any::<bool>().prop_map(Yaml::Bool),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Yaml::Seq),
                prop::collection::btree_map("[ -~]{0,8}|\\PC{0,4}", inner, 0..4)
                    .prop_map(|m| Yaml::Map(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_document_parses_back_to_itself(doc in node()) {
            let text = to_string(&doc);
            prop_assert_eq!(parse(&text), to_json(&doc), "{}", text);
        }
    }
}
