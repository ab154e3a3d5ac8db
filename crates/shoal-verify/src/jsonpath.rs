//! The JSON paths scenarios use to pick a value from a JSON body: `$`, `.key`, `['key']`,
//! `["key"]` and `[N]` (an index, negative from the end), as in `$.items[0].id`. The subset
//! of JSONPath that names one value.

use std::fmt;

use serde_json::Value;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(i64),
}

impl JsonPath {
    /// Parses `$.a.b[0]['c d']`.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let bad = |why: &str| format!("`{text}` is not a JSON path: {why}");
        let mut rest = text
            .strip_prefix('$')
            .ok_or_else(|| bad("it must start with `$`"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return Err(bad("a `.` must be followed by a key"));
                }
                if key == "*" || key.starts_with('.') {
                    return Err(bad("wildcards and `..` are not supported; name one value"));
                }
                steps.push(Step::Key(key.to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| bad("`[` without `]`"))?;
                let inside = after[..end].trim();
                let quoted = inside
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                match quoted {
                    Some(key) => steps.push(Step::Key(key.to_owned())),
                    None => {
                        let index = inside.parse::<i64>().map_err(|_| {
                            bad("expected an index such as `[0]` or a quoted key such as `['id']`")
                        })?;
                        steps.push(Step::Index(index));
                    }
                }
                rest = &after[end + 1..];
            } else {
                return Err(bad("expected `.key` or `[index]`"));
            }
        }
        Ok(JsonPath {
            steps,
            raw: text.to_owned(),
        })
    }

    /// The value at this path in `value`.
    pub fn find<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut current = value;
        for step in &self.steps {
            current = match (step, current) {
                (Step::Key(key), Value::Object(map)) => map.get(key)?,
                (Step::Index(index), Value::Array(items)) => {
                    let at = if *index < 0 {
                        items.len().checked_sub(index.unsigned_abs() as usize)?
                    } else {
                        *index as usize
                    };
                    items.get(at)?
                }
                _ => return None,
            };
        }
        Some(current)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A JSON value as text to substitute: strings without their quotes, anything else as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_keys_indexes_and_quoted_keys() {
        let doc = json!({"items": [{"id": 7}, {"id": 9, "a b": "x"}], "n": null});
        let find = |p: &str| JsonPath::parse(p).unwrap().find(&doc).cloned();
        assert_eq!(find("$.items[0].id"), Some(json!(7)));
        assert_eq!(find("$.items[-1]['a b']"), Some(json!("x")));
        assert_eq!(find("$[\"items\"][1].id"), Some(json!(9)));
        assert_eq!(find("$.n"), Some(Value::Null));
        assert_eq!(find("$"), Some(doc.clone()));
        assert_eq!(find("$.items[5]"), None);
        assert_eq!(find("$.items.id"), None);
        assert_eq!(as_text(&json!("a")), "a");
        assert_eq!(as_text(&json!({"a": 1})), "{\"a\":1}");
    }

    #[test]
    fn rejects_what_it_cannot_follow() {
        for bad in ["id", "$.", "$..id", "$.items[*]", "$[x]", "$.a[0"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
