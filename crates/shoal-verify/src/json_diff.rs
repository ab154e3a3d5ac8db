//! JSON bodies compared as structures: key order and formatting do not matter, and each
//! difference is named by its path (`$.items[1].name`).
//!
//! Learning from two baseline answers marks the paths where they differ as noise: a value that
//! changed, a key present in only one, an array whose length changed (then the whole array is
//! noise). Comparing skips those paths and everything below them; strings that differ only in
//! words of a volatile shape (see [`crate::tokens`]) are equal.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::tokens::equal_but_volatile;

/// Paths whose values change by themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JsonNoise {
    paths: BTreeSet<String>,
}

/// One difference at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonDifference {
    pub(crate) path: String,
    /// The baseline's value, or `None` when the key is new.
    pub(crate) baseline: Option<String>,
    /// The shuffled value, or `None` when the key is missing.
    pub(crate) shuffled: Option<String>,
}

impl JsonNoise {
    pub(crate) fn learn(first: &Value, second: &Value) -> JsonNoise {
        let mut noise = JsonNoise::default();
        learn_at(first, second, "$".to_owned(), &mut noise.paths);
        noise
    }

    /// The paths learned as noise.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// Where `shuffled` differs from `baseline`, beyond the noise; at most `limit` of them.
    pub(crate) fn compare(
        &self,
        baseline: &Value,
        shuffled: &Value,
        limit: usize,
    ) -> Vec<JsonDifference> {
        let mut found = Vec::new();
        self.compare_at(baseline, shuffled, "$".to_owned(), &mut found, limit);
        found
    }

    fn compare_at(
        &self,
        baseline: &Value,
        shuffled: &Value,
        path: String,
        found: &mut Vec<JsonDifference>,
        limit: usize,
    ) {
        if found.len() >= limit || self.paths.contains(&path) {
            return;
        }
        match (baseline, shuffled) {
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    let child = child_key(&path, key);
                    match b.get(key) {
                        Some(other) => self.compare_at(value, other, child, found, limit),
                        None if !self.paths.contains(&child) && found.len() < limit => {
                            found.push(JsonDifference {
                                path: child,
                                baseline: Some(short(value)),
                                shuffled: None,
                            });
                        }
                        None => {}
                    }
                }
                for (key, value) in b {
                    let child = child_key(&path, key);
                    if !a.contains_key(key) && !self.paths.contains(&child) && found.len() < limit {
                        found.push(JsonDifference {
                            path: child,
                            baseline: None,
                            shuffled: Some(short(value)),
                        });
                    }
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    found.push(JsonDifference {
                        path: path.clone(),
                        baseline: Some(format!("{} items", a.len())),
                        shuffled: Some(format!("{} items", b.len())),
                    });
                }
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    self.compare_at(x, y, format!("{path}[{i}]"), found, limit);
                }
            }
            (Value::String(a), Value::String(b)) if equal_but_volatile(a, b) => {}
            (Value::Number(a), Value::Number(b))
                if a == b || equal_but_volatile(&a.to_string(), &b.to_string()) => {}
            (a, b) if a == b => {}
            (a, b) => found.push(JsonDifference {
                path,
                baseline: Some(short(a)),
                shuffled: Some(short(b)),
            }),
        }
    }
}

fn learn_at(first: &Value, second: &Value, path: String, noise: &mut BTreeSet<String>) {
    match (first, second) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => learn_at(value, other, child_key(&path, key), noise),
                    None => {
                        noise.insert(child_key(&path, key));
                    }
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                noise.insert(child_key(&path, key));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                learn_at(x, y, format!("{path}[{i}]"), noise);
            }
        }
        (a, b) if a == b => {}
        _ => {
            noise.insert(path);
        }
    }
}

/// `$.key`, or `$['odd key']` for keys that are not plain names.
fn child_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}['{}']", key.replace('\'', "\\'"))
    }
}

/// A value as compact JSON, cut to a readable length.
fn short(value: &Value) -> String {
    let text = value.to_string();
    crate::report::clip(&text, 120)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..5).prop_map(|n| json!(n)),
            prop::sample::select(vec!["a", "b", "alice", "12:00:01"]).prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["id", "name", "items", "n"]).prop_map(str::to_owned),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_baselines_match_what_was_learned_from_them(a in value(), b in value()) {
            let noise = JsonNoise::learn(&a, &b);
            prop_assert_eq!(noise.compare(&a, &b, 100), vec![]);
            prop_assert_eq!(noise.compare(&a, &a, 100), vec![]);
            prop_assert_eq!(JsonNoise::default().compare(&b, &b, 100), vec![]);
        }

        #[test]
        fn a_change_where_the_baselines_agreed_is_found(a in value()) {
            let noise = JsonNoise::learn(&a, &a);
            let changed = json!({"wrapped": a.clone()});
            prop_assert!(!noise.compare(&a, &changed, 100).is_empty());
        }
    }

    #[test]
    fn learned_paths_are_skipped() {
        let b1 = json!({"id": "a1", "user": "alice", "at": 1, "items": [1], "n": 3});
        let b2 = json!({"id": "b2", "user": "alice", "at": 2, "items": [1, 2], "n": 3});
        let noise = JsonNoise::learn(&b1, &b2);
        assert_eq!(
            noise.paths().collect::<Vec<_>>(),
            ["$.at", "$.id", "$.items"]
        );
        let s = json!({"n": 3, "items": [], "id": "zz", "at": 9, "user": "alice"});
        assert_eq!(noise.compare(&b1, &s, 10), vec![]);
        let stateful =
            json!({"id": "zz", "user": null, "at": 9, "items": [], "n": 1, "extra": true});
        assert_eq!(
            noise.compare(&b1, &stateful, 10),
            vec![
                JsonDifference {
                    path: "$.n".into(),
                    baseline: Some("3".into()),
                    shuffled: Some("1".into())
                },
                JsonDifference {
                    path: "$.user".into(),
                    baseline: Some("\"alice\"".into()),
                    shuffled: Some("null".into())
                },
                JsonDifference {
                    path: "$.extra".into(),
                    baseline: None,
                    shuffled: Some("true".into())
                },
            ]
        );
    }

    #[test]
    fn volatile_strings_and_odd_keys() {
        let b = json!({"created": "2024-06-01T12:00:00Z", "a b": 1});
        let s = json!({"created": "2024-06-01T12:00:05Z", "a b": 2});
        let diffs = JsonNoise::default().compare(&b, &s, 10);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].path, "$['a b']");
    }
}
