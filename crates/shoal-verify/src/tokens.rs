//! Lines cut into words and separators, and the shapes of words that change by themselves.
//!
//! A word is a run of characters other than whitespace and `"'<>()[]{},;=&?/\|`: so
//! `2024-06-01T12:00:00Z`, `12:00:01`, `web.2` and `3f2a…` are one word each, and a token in
//! `value="…"` or `/items/…` is a word of its own.
//!
//! Noise that the two baseline runs did not show (both ran within the same second, say) is
//! still recognised by its shape: when a baseline word and a shuffled word differ but both
//! follow the clock — two clock times, two dates, two Unix timestamps, two durations (`3 ms`),
//! two weekday or month names — the difference is not counted. A counter, a name or a short id
//! never has such a shape, so state still shows. Random values (UUIDs, long tokens) are not
//! forgiven this way: two baseline runs never agree on a random value, so they learn it as
//! noise; one that both runs agree on is deterministic (a SHA-256 of an upload, say), and a
//! shuffled run that answers another one has shown a real difference.

/// A word or a separator, with its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Word(&'a str),
    /// One separator character, or a run of whitespace.
    Sep(&'a str),
}

impl<'a> Token<'a> {
    pub(crate) fn text(self) -> &'a str {
        match self {
            Token::Word(text) | Token::Sep(text) => text,
        }
    }
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'<>()[]{},;=&?/\\|`".contains(c)
}

/// Cuts `line` into tokens; concatenated, they give `line` back.
pub(crate) fn tokenize(line: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let mut end = start + c.len_utf8();
        if c.is_whitespace() {
            while let Some(&(i, next)) = chars.peek() {
                if !next.is_whitespace() {
                    break;
                }
                end = i + next.len_utf8();
                chars.next();
            }
            tokens.push(Token::Sep(&line[start..end]));
        } else if is_separator(c) {
            tokens.push(Token::Sep(&line[start..end]));
        } else {
            while let Some(&(i, next)) = chars.peek() {
                if is_separator(next) {
                    break;
                }
                end = i + next.len_utf8();
                chars.next();
            }
            tokens.push(Token::Word(&line[start..end]));
        }
    }
    tokens
}

/// Kinds of words that change by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Time,
    Date,
    Uuid,
    RandomToken,
    Epoch,
    Duration,
    Weekday,
    Month,
}

impl Shape {
    /// Whether words of this shape change with the time of day, so that two baseline runs
    /// close together can agree on one by chance.
    pub(crate) fn follows_the_clock(self) -> bool {
        !matches!(self, Shape::Uuid | Shape::RandomToken)
    }
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DURATION_UNITS: [&str; 10] = [
    "ns",
    "us",
    "µs",
    "ms",
    "s",
    "sec",
    "secs",
    "seconds",
    "millis",
    "milliseconds",
];

/// The volatile shape of `word`, if it has one; `next` is the word after it (for `3 ms`).
pub(crate) fn shape(word: &str, next: Option<&str>) -> Option<Shape> {
    let bytes = word.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if is_uuid(word) {
        return Some(Shape::Uuid);
    }
    if bytes.len() >= 10 && digits(&bytes[..4]) && bytes[4] == b'-' && digits(&bytes[5..7]) {
        return Some(Shape::Date);
    }
    if is_time(word) {
        return Some(Shape::Time);
    }
    if digits(bytes) {
        let epoch =
            (bytes.len() == 10 || bytes.len() == 13 || bytes.len() == 16) && bytes[0] == b'1';
        if epoch {
            return Some(Shape::Epoch);
        }
    }
    if let Some(unit) = duration_unit(word) {
        let number = &word[..word.len() - unit.len()];
        if is_number(number) {
            return Some(Shape::Duration);
        }
    }
    if is_number(word) && next.is_some_and(|n| DURATION_UNITS.contains(&n)) {
        return Some(Shape::Duration);
    }
    let lower = word.to_ascii_lowercase();
    let name_of = |names: &[&str]| {
        names
            .iter()
            .any(|n| lower == *n || (lower.len() > 3 && lower.starts_with(n) && lower.len() <= 9))
    };
    if word.chars().next().is_some_and(char::is_uppercase) {
        if name_of(&WEEKDAYS) && (lower.len() == 3 || lower.ends_with("day")) {
            return Some(Shape::Weekday);
        }
        if name_of(&MONTHS) && (lower.len() == 3 || is_full_month(&lower)) {
            return Some(Shape::Month);
        }
    }
    if is_random_token(word) {
        return Some(Shape::RandomToken);
    }
    None
}

fn is_full_month(lower: &str) -> bool {
    [
        "january",
        "february",
        "march",
        "april",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ]
    .contains(&lower)
}

fn duration_unit(word: &str) -> Option<&'static str> {
    ["ms", "µs", "us", "ns", "s"]
        .into_iter()
        .find(|unit| word.len() > unit.len() && word.ends_with(unit))
}

fn is_number(text: &str) -> bool {
    let mut seen_digit = false;
    let mut seen_dot = false;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' => seen_digit = true,
            b'.' if !seen_dot => seen_dot = true,
            _ => return false,
        }
    }
    seen_digit
}

fn is_uuid(word: &str) -> bool {
    let groups: Vec<&str> = word.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `9:05`, `12:00:01`, `12:00:01.123Z`.
fn is_time(word: &str) -> bool {
    let word = word.trim_end_matches(['Z', 'z']);
    let main = word.split(['.', ',']).next().unwrap_or("");
    let parts: Vec<&str> = main.split(':').collect();
    (2..=3).contains(&parts.len())
        && parts[0].len() <= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[1..].iter().all(|p| p.len() == 2)
}

/// At least 16 characters of an id alphabet, mixing at least two of lowercase, uppercase and
/// digits (hex digests, base64 tokens, session ids) — not an English word.
fn is_random_token(word: &str) -> bool {
    if word.len() < 16
        || !word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+.%:".contains(&b))
    {
        return false;
    }
    let lower = word.bytes().any(|b| b.is_ascii_lowercase());
    let upper = word.bytes().any(|b| b.is_ascii_uppercase());
    let digit = word.bytes().any(|b| b.is_ascii_digit());
    u8::from(lower) + u8::from(upper) + u8::from(digit) >= 2
}

/// Whether two lines are equal but for words of the same volatile shape.
pub(crate) fn equal_but_volatile(a: &str, b: &str) -> bool {
    a == b || tokens_equal_but_volatile(&tokenize(a), &tokenize(b))
}

/// [`equal_but_volatile`] for lines already cut into tokens.
pub(crate) fn tokens_equal_but_volatile(ta: &[Token<'_>], tb: &[Token<'_>]) -> bool {
    if ta.len() != tb.len() {
        return false;
    }
    fn next_word<'t>(tokens: &[Token<'t>], i: usize) -> Option<&'t str> {
        tokens[i + 1..].iter().find_map(|t| match t {
            Token::Word(w) => Some(*w),
            Token::Sep(_) => None,
        })
    }
    ta.iter()
        .zip(tb)
        .enumerate()
        .all(|(i, (x, y))| match (x, y) {
            (Token::Word(x), Token::Word(y)) => {
                x == y || {
                    let sx = shape(x, next_word(ta, i));
                    sx.is_some_and(Shape::follows_the_clock) && sx == shape(y, next_word(tb, i))
                }
            }
            (Token::Sep(x), Token::Sep(y)) => x == y,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_give_the_line_back() {
        let line = r#"<input name="csrf" value="a8f/9+b=="> at 12:00:01 by web.2"#;
        let tokens = tokenize(line);
        assert_eq!(tokens.iter().map(|t| t.text()).collect::<String>(), line);
        let words: Vec<&str> = tokens
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(*w),
                Token::Sep(_) => None,
            })
            .collect();
        assert_eq!(
            words,
            [
                "input", "name", "csrf", "value", "a8f", "9+b", "at", "12:00:01", "by", "web.2"
            ]
        );
    }

    #[test]
    fn volatile_shapes() {
        assert_eq!(shape("12:00:01", None), Some(Shape::Time));
        assert_eq!(shape("9:05", None), Some(Shape::Time));
        assert_eq!(shape("2024-06-01T12:00:00.123Z", None), Some(Shape::Date));
        assert_eq!(shape("2024-06-01", None), Some(Shape::Date));
        assert_eq!(
            shape("3f2a9c1e-0b7d-4e8a-9f00-123456789abc", None),
            Some(Shape::Uuid)
        );
        assert_eq!(
            shape("9f86d081884c7d659a2feaa0c55ad015", None),
            Some(Shape::RandomToken)
        );
        assert_eq!(shape("Xk29_aZq81LmPq0wRt", None), Some(Shape::RandomToken));
        assert_eq!(shape("1717243200", None), Some(Shape::Epoch));
        assert_eq!(shape("0.42", Some("ms")), Some(Shape::Duration));
        assert_eq!(shape("12ms", None), Some(Shape::Duration));
        assert_eq!(shape("Sat", None), Some(Shape::Weekday));
        assert_eq!(shape("Saturday", None), Some(Shape::Weekday));
        assert_eq!(shape("Jun", None), Some(Shape::Month));
        // What state looks like has no volatile shape.
        for word in [
            "3",
            "42",
            "alice",
            "internationalization",
            "web.2",
            "items",
            "Mayor",
            "0.42",
        ] {
            assert_eq!(shape(word, None), None, "{word}");
        }
    }

    #[test]
    fn lines_equal_but_for_volatile_words() {
        // The day of the month is a plain number: only the baseline runs can show it changes.
        assert!(!equal_but_volatile(
            "<p>Generated at 12:00:01 on Sat, 01 Jun 2024 in 3 ms</p>",
            "<p>Generated at 12:00:02 on Sun, 02 Jun 2024 in 14 ms</p>"
        ));
        assert!(equal_but_volatile(
            "<p>Generated at 12:00:01 on Sat in 3 ms</p>",
            "<p>Generated at 12:00:02 on Sun in 14 ms</p>"
        ));
        assert!(!equal_but_volatile("<p>Visits: 3</p>", "<p>Visits: 4</p>"));
        assert!(!equal_but_volatile("Hello alice", "Hello bob"));
    }

    #[test]
    fn random_values_are_not_forgiven_by_their_shape() {
        // Both baselines agreed on this digest: another one is a real difference.
        assert!(!equal_but_volatile(
            "<td id=\"report-sha256\">ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad</td>",
            "<td id=\"report-sha256\">e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855</td>"
        ));
        assert!(!equal_but_volatile(
            "id 3f2a9c1e-0b7d-4e8a-9f00-123456789abc",
            "id 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
        ));
    }
}
