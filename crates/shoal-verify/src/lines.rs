//! Text compared line by line, with the noise learned from two baseline answers.
//!
//! Learning lines up the two baseline texts (a Myers diff). A line the same in both is kept
//! as it is. A line that changed in place becomes a pattern: its words that changed are
//! wildcards (`value="*"`), the rest must stay. Where the two differ in how many lines they
//! have, those lines may be anything, or be missing, and lines may be added there.
//!
//! Comparing lines up the first baseline text with the shuffled one, a line matching when it
//! fits its rule (or is equal but for words of a volatile shape, see [`crate::tokens`]); what
//! is left over is the divergence, shown as `-`/`+` lines.

use std::time::{Duration, Instant};

use similar::DiffOp;
use similar::algorithms::{Capture, Replace, myers};

use crate::tokens::{Token, equal_but_volatile, tokenize, tokens_equal_but_volatile};

/// What a baseline line must be matched by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// The same line (but for volatile words).
    Exact,
    /// Literal pieces with wildcards between them.
    Pattern(Vec<Piece>),
    /// Anything, or nothing.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Wild,
}

/// The first baseline's lines, each with its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineTemplate {
    lines: Vec<String>,
    rules: Vec<Rule>,
    /// `gaps[i]`: lines may be added before line `i` (`gaps[len]`: at the end).
    gaps: Vec<bool>,
}

/// A stretch where the shuffled text left the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hunk {
    /// 1-based line of the baseline where it starts.
    pub(crate) line: usize,
    pub(crate) removed: Vec<String>,
    pub(crate) added: Vec<String>,
}

/// Diffs give up looking for the shortest script after this long (the result is still a valid
/// diff, only a coarser one).
const DIFF_DEADLINE: Duration = Duration::from_secs(2);

/// Texts whose differing middles would need more cells than this to line up exactly are
/// compared with a Myers diff instead (about 16 MB of memory).
const MAX_CELLS: usize = 4_000_000;

fn diff_ops<O, N: PartialEq<O>>(old: &[O], new: &[N]) -> Vec<DiffOp> {
    let mut hook = Replace::new(Capture::new());
    let deadline = Some(Instant::now() + DIFF_DEADLINE);
    let Ok(()) = myers::diff_deadline(&mut hook, old, 0..old.len(), new, 0..new.len(), deadline);
    hook.into_inner().into_ops()
}

/// A line as a diff sees it, so that the diff works on `&str` slices of any kind.
#[derive(PartialEq)]
struct Exact<'a>(&'a str);

impl LineTemplate {
    /// Learns what varies between two baseline texts.
    pub(crate) fn learn(first: &[String], second: &[String]) -> LineTemplate {
        let mut rules = vec![Rule::Exact; first.len()];
        let mut gaps = vec![false; first.len() + 1];
        let a: Vec<Exact<'_>> = first.iter().map(|l| Exact(l)).collect();
        let b: Vec<Exact<'_>> = second.iter().map(|l| Exact(l)).collect();
        for op in diff_ops(&a, &b) {
            match op {
                DiffOp::Equal { .. } => {}
                DiffOp::Delete {
                    old_index, old_len, ..
                } => {
                    for rule in &mut rules[old_index..old_index + old_len] {
                        *rule = Rule::Any;
                    }
                }
                DiffOp::Insert { old_index, .. } => gaps[old_index] = true,
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    if old_len == new_len {
                        for k in 0..old_len {
                            rules[old_index + k] =
                                pattern(&first[old_index + k], &second[new_index + k]);
                        }
                    } else {
                        for rule in &mut rules[old_index..old_index + old_len] {
                            *rule = Rule::Any;
                        }
                        gaps[old_index] = true;
                        gaps[old_index + old_len] = true;
                    }
                }
            }
        }
        LineTemplate {
            lines: first.to_vec(),
            rules,
            gaps,
        }
    }

    /// How many lines (or places between lines) are noise.
    pub(crate) fn noisy_lines(&self) -> Vec<(usize, &str)> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != Rule::Exact)
            .map(|(i, _)| (i + 1, self.lines[i].as_str()))
            .collect()
    }

    /// Whether lines may be added somewhere.
    pub(crate) fn has_gaps(&self) -> bool {
        self.gaps.iter().any(|g| *g)
    }

    /// Where `shuffled` leaves the baseline, beyond the learned noise: the alignment that
    /// loses the fewest lines that must stay and adds the fewest lines where none may be
    /// added (lines that may be anything cost nothing to drop, and lines next to them or where
    /// the baselines differed in length cost nothing to add).
    pub(crate) fn compare(&self, shuffled: &[String]) -> Vec<Hunk> {
        let expected: Vec<Vec<Token<'_>>> = self.lines.iter().map(|l| tokenize(l)).collect();
        let got: Vec<Vec<Token<'_>>> = shuffled.iter().map(|l| tokenize(l)).collect();
        let fits = |i: usize, j: usize| self.fits(i, &expected[i], &shuffled[j], &got[j]);
        // Lines that fit at both ends are lined up as they are — where no line may be added
        // next to them for free, so that lining them up cannot cost a better alignment.
        let (n, m) = (self.lines.len(), shuffled.len());
        let mut start = 0;
        while start < n
            && start < m
            && !self.may_add_at(start)
            && self.rules[start] != Rule::Any
            && fits(start, start)
        {
            start += 1;
        }
        let (mut end_t, mut end_s) = (n, m);
        while end_t > start
            && end_s > start
            && !self.may_add_at(end_t)
            && self.rules[end_t - 1] != Rule::Any
            && fits(end_t - 1, end_s - 1)
        {
            end_t -= 1;
            end_s -= 1;
        }
        let (rows, cols) = (end_t - start, end_s - start);
        if rows.saturating_mul(cols) > MAX_CELLS {
            return self.compare_coarse(shuffled);
        }
        let drop_cost = |i: usize| u32::from(self.rules[start + i] != Rule::Any);
        let add_cost = |i: usize| u32::from(!self.may_add_at(start + i));
        // cost[i][j]: the least cost of lining up template lines i.. with shuffled lines j..
        let width = cols + 1;
        let mut cost = vec![0u32; (rows + 1) * width];
        for i in (0..=rows).rev() {
            for j in (0..=cols).rev() {
                if i == rows && j == cols {
                    continue;
                }
                let mut best = u32::MAX;
                if i < rows {
                    best = cost[(i + 1) * width + j] + drop_cost(i);
                }
                if j < cols {
                    best = best.min(cost[i * width + j + 1] + add_cost(i));
                }
                if i < rows && j < cols && best > 0 && fits(start + i, start + j) {
                    best = best.min(cost[(i + 1) * width + j + 1]);
                }
                cost[i * width + j] = best;
            }
        }
        let mut hunks: Vec<Hunk> = Vec::new();
        let mut open: Option<Hunk> = None;
        let (mut i, mut j) = (0, 0);
        while i < rows || j < cols {
            let here = cost[i * width + j];
            if i < rows
                && j < cols
                && cost[(i + 1) * width + j + 1] == here
                && fits(start + i, start + j)
            {
                hunks.extend(open.take());
                i += 1;
                j += 1;
            } else if i < rows && cost[(i + 1) * width + j] + drop_cost(i) == here {
                if drop_cost(i) > 0 {
                    open.get_or_insert_with(|| Hunk {
                        line: start + i + 1,
                        removed: Vec::new(),
                        added: Vec::new(),
                    })
                    .removed
                    .push(self.lines[start + i].clone());
                }
                i += 1;
            } else {
                if add_cost(i) > 0 {
                    open.get_or_insert_with(|| Hunk {
                        line: start + i + 1,
                        removed: Vec::new(),
                        added: Vec::new(),
                    })
                    .added
                    .push(shuffled[start + j].clone());
                }
                j += 1;
            }
        }
        hunks.extend(open);
        hunks
    }

    /// Whether a shuffled line fits template line `i`.
    fn fits(&self, i: usize, expected: &[Token<'_>], line: &str, got: &[Token<'_>]) -> bool {
        match &self.rules[i] {
            Rule::Any => false,
            Rule::Exact => self.lines[i] == line || tokens_equal_but_volatile(expected, got),
            Rule::Pattern(pieces) => glob(pieces, line) || tokens_equal_but_volatile(expected, got),
        }
    }

    /// Whether lines may be added before template line `i` (`i == len`: at the end).
    fn may_add_at(&self, i: usize) -> bool {
        self.gaps[i]
            || (i > 0 && self.rules[i - 1] == Rule::Any)
            || self.rules.get(i) == Some(&Rule::Any)
    }

    /// The same comparison with a Myers diff, for texts too long to line up exactly.
    fn compare_coarse(&self, shuffled: &[String]) -> Vec<Hunk> {
        let expected: Vec<Expected<'_>> = self
            .lines
            .iter()
            .zip(&self.rules)
            .map(|(line, rule)| Expected { line, rule })
            .collect();
        let got: Vec<Got<'_>> = shuffled.iter().map(|l| Got(l)).collect();
        let mut hunks = Vec::new();
        for op in diff_ops(&expected, &got) {
            let (old_index, old_len, new_index, new_len) = match op {
                DiffOp::Equal { .. } => continue,
                DiffOp::Delete {
                    old_index,
                    old_len,
                    new_index,
                } => (old_index, old_len, new_index, 0),
                DiffOp::Insert {
                    old_index,
                    new_index,
                    new_len,
                } => (old_index, 0, new_index, new_len),
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => (old_index, old_len, new_index, new_len),
            };
            let removed: Vec<String> = (old_index..old_index + old_len)
                .filter(|&i| self.rules[i] != Rule::Any)
                .map(|i| self.lines[i].clone())
                .collect();
            // Added lines are fine where the baseline runs also differed in length.
            let may_add = (old_index..=old_index + old_len).any(|i| self.gaps[i])
                || (old_index..old_index + old_len).any(|i| self.rules[i] == Rule::Any)
                || (old_index > 0 && self.rules[old_index - 1] == Rule::Any)
                || self.rules.get(old_index + old_len) == Some(&Rule::Any);
            let added: Vec<String> = if may_add {
                Vec::new()
            } else {
                shuffled[new_index..new_index + new_len].to_vec()
            };
            if !removed.is_empty() || !added.is_empty() {
                hunks.push(Hunk {
                    line: old_index + 1,
                    removed,
                    added,
                });
            }
        }
        hunks
    }
}

struct Expected<'a> {
    line: &'a str,
    rule: &'a Rule,
}

struct Got<'a>(&'a str);

impl PartialEq<Expected<'_>> for Got<'_> {
    fn eq(&self, expected: &Expected<'_>) -> bool {
        match expected.rule {
            // Lines that may be anything are never lined up: they are always free to drop, and
            // lines next to them are free to add. (Matching them to anything would let the
            // diff trade one for a line that must stay.)
            Rule::Any => false,
            Rule::Exact => equal_but_volatile(expected.line, self.0),
            Rule::Pattern(pieces) => {
                glob(pieces, self.0) || equal_but_volatile(expected.line, self.0)
            }
        }
    }
}

/// The pattern of a line that changed between the baseline runs: the words that changed
/// become wildcards.
fn pattern(first: &str, second: &str) -> Rule {
    let a = tokenize(first);
    let b = tokenize(second);
    let mut pieces: Vec<Piece> = Vec::new();
    let push_text = |pieces: &mut Vec<Piece>, text: &str| match pieces.last_mut() {
        Some(Piece::Text(last)) => last.push_str(text),
        _ => pieces.push(Piece::Text(text.to_owned())),
    };
    for op in diff_ops(&a, &b) {
        match op {
            DiffOp::Equal { old_index, len, .. } => {
                for token in &a[old_index..old_index + len] {
                    push_text(&mut pieces, token.text());
                }
            }
            _ => {
                if pieces.last() != Some(&Piece::Wild) {
                    pieces.push(Piece::Wild);
                }
            }
        }
    }
    let literal: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.trim().len(),
            Piece::Wild => 0,
        })
        .sum();
    if literal == 0 {
        Rule::Any
    } else {
        Rule::Pattern(pieces)
    }
}

/// Whether `text` matches `pieces` (literal text and `*` wildcards, which match anything).
fn glob(pieces: &[Piece], text: &str) -> bool {
    let mut rest = text;
    let mut anchored = true;
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Wild => anchored = false,
            Piece::Text(literal) => {
                let last = i + 1 == pieces.len();
                if anchored {
                    let Some(after) = rest.strip_prefix(literal.as_str()) else {
                        return false;
                    };
                    rest = after;
                } else if last {
                    return rest.ends_with(literal.as_str());
                } else {
                    let Some(at) = rest.find(literal.as_str()) else {
                        return false;
                    };
                    rest = &rest[at + literal.len()..];
                }
                anchored = true;
            }
        }
    }
    !anchored || rest.is_empty()
}

/// Splits a text body into lines (`\n` or `\r\n`).
pub(crate) fn split_lines(text: &str) -> Vec<String> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines from a small vocabulary, so that texts share and repeat lines.
    fn text() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop::sample::select(vec![
                "<html>",
                "</html>",
                "<p>a</p>",
                "<p>b</p>",
                "",
                "token 1f2e3d",
                "token 9a8b7c",
                "<li>x</li>",
                "<li>y</li>",
                "at 12:00:01",
                "at 12:00:02",
                "n = 3",
                "n = 4",
            ])
            .prop_map(str::to_owned),
            0..30,
        )
    }

    proptest! {
        #[test]
        fn what_was_learned_from_matches_the_template(a in text(), b in text()) {
            let template = LineTemplate::learn(&a, &b);
            prop_assert_eq!(template.compare(&a), vec![]);
            prop_assert_eq!(template.compare(&b), vec![]);
        }

        #[test]
        fn a_new_line_where_the_baselines_agreed_is_a_divergence(a in text(), at in any::<prop::sample::Index>()) {
            prop_assume!(!a.is_empty());
            let template = LineTemplate::learn(&a, &a);
            let mut changed = a.clone();
            changed[at.index(a.len())] = "<p>signed in as nobody</p>".to_owned();
            prop_assert!(!template.compare(&changed).is_empty());
            let mut shorter = a.clone();
            shorter.remove(at.index(a.len()));
            prop_assert!(!template.compare(&shorter).is_empty());
        }
    }

    fn lines(text: &str) -> Vec<String> {
        split_lines(text)
    }

    #[test]
    fn changed_words_become_wildcards() {
        let rule = pattern(
            r#"<input name="csrf" value="abc123">"#,
            r#"<input name="csrf" value="zz9">"#,
        );
        let Rule::Pattern(pieces) = &rule else {
            panic!("{rule:?}")
        };
        assert!(glob(pieces, r#"<input name="csrf" value="q">"#));
        assert!(glob(pieces, r#"<input name="csrf" value="">"#));
        assert!(!glob(pieces, r#"<input name="token" value="q">"#));
        assert_eq!(pattern("a", "b"), Rule::Any);
    }

    #[test]
    fn globs() {
        let p = |parts: &[Option<&str>]| -> Vec<Piece> {
            parts
                .iter()
                .map(|p| p.map_or(Piece::Wild, |t| Piece::Text(t.into())))
                .collect()
        };
        assert!(glob(&p(&[Some("a"), None, Some("c")]), "abc"));
        assert!(glob(&p(&[Some("a"), None, Some("c")]), "ac"));
        assert!(!glob(&p(&[Some("a"), None, Some("c")]), "abcd"));
        assert!(glob(&p(&[None, Some("b"), None]), "abc"));
        assert!(glob(&p(&[Some("x=")]), "x="));
        assert!(!glob(&p(&[Some("x=")]), "x=1"));
        assert!(glob(&p(&[Some("a"), None, Some("a")]), "aba"));
        assert!(!glob(&p(&[Some("ab"), None, Some("ba")]), "aba"));
    }

    #[test]
    fn learned_noise_is_ignored_and_state_is_not() {
        let b1 = lines("<h1>Cart</h1>\n<p>token abc</p>\n<li>apple</li>\n<p>at 12:00:01</p>\n");
        let b2 = lines("<h1>Cart</h1>\n<p>token xyz</p>\n<li>apple</li>\n<p>at 12:00:02</p>\n");
        let template = LineTemplate::learn(&b1, &b2);
        let same = lines("<h1>Cart</h1>\n<p>token qqq</p>\n<li>apple</li>\n<p>at 12:00:09</p>\n");
        assert_eq!(template.compare(&same), vec![]);
        let empty = lines("<h1>Cart</h1>\n<p>token qqq</p>\n<p>at 12:00:09</p>\n");
        assert_eq!(
            template.compare(&empty),
            vec![Hunk {
                line: 3,
                removed: vec!["<li>apple</li>".into()],
                added: vec![]
            }]
        );
    }

    #[test]
    fn lists_that_grew_between_baselines_may_grow_again() {
        let b1 = lines("items\na\nend");
        let b2 = lines("items\na\nb\nend");
        let template = LineTemplate::learn(&b1, &b2);
        assert!(template.has_gaps());
        assert_eq!(template.compare(&lines("items\na\nb\nc\nend")), vec![]);
        assert_eq!(
            template.compare(&lines("items\na\nb\nc")),
            vec![Hunk {
                line: 3,
                removed: vec!["end".into()],
                added: vec![]
            }]
        );
    }
}
