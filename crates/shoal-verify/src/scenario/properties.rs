//! Property tests of the scenario parsers (`.http`, HAR, templates) and of what runs on their
//! output before a replay (the checks, building requests): no input panics or runs away, a
//! well-formed file parses to exactly what was written, and every error names a line of the
//! input.
//!
//! Inputs are bounded so that each case is quick; `PROPTEST_CASES` raises the number of cases
//! (proptest's default, 256, keeps the suite to a few seconds in a debug build), and
//! `bench/fuzz.sh` runs these with a large count in release mode.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;

use super::check::{Environment, check};
use super::{BodyLine, Scenario, har, http_file};
use crate::error::ScenarioError;
use crate::resolve::Replay;

const PORT: u16 = 5000;

fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

/// Parses, checks and builds every request of `text` as a replay would (without answers),
/// and asserts that every error on the way names `p.http` and a line of the input.
fn parse_check_build(text: &str) -> Result<(), TestCaseError> {
    let lines = line_count(text);
    let in_input = |line: usize| (1..=lines).contains(&line);
    let scenario = match http_file::parse(Path::new("p.http"), text) {
        Ok(scenario) => scenario,
        Err(err) => {
            let message = err.to_string();
            prop_assert!(message.starts_with("p.http"), "{message}");
            if let ScenarioError::At { line, .. } = err {
                prop_assert!(in_input(line), "line {line} of {lines}: {message}");
            }
            return Ok(());
        }
    };
    prop_assert!(!scenario.requests.is_empty());
    for request in &scenario.requests {
        prop_assert!(in_input(request.line));
    }
    let dotenv = BTreeMap::new();
    let env = Environment {
        dotenv: &dotenv,
        public_port: PORT,
    };
    if let Err(err) = check(&scenario, env) {
        let message = err.to_string();
        match err {
            ScenarioError::At { line, .. } => {
                prop_assert!(in_input(line), "line {line} of {lines}: {message}");
            }
            other => prop_assert!(false, "not at a line: {other}"),
        }
        return Ok(());
    }
    // A lower bound on substituted text than a run's 256 MiB keeps each case small; what
    // matters is that the bound holds.
    let mut client = Replay::new(&scenario, PORT, &dotenv).with_limit(1 << 16);
    for spec in &scenario.requests {
        match client.build(spec) {
            Ok(request) => {
                prop_assert!(request.path.starts_with('/'));
                client.record(spec, &request, None);
            }
            // A checked scenario builds, but for values only an answer can give.
            Err(err) => prop_assert!(in_input(err.line), "line {} of {lines}", err.line),
        }
    }
    Ok(())
}

/// Lines of `.http` files, valid or nearly so, including the shapes that cost the most:
/// variables built from other variables, long names, unclosed placeholders.
fn http_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "###", "### title", "GET /", "POST {{baseUrl}}/x", "/bare", "GET /a HTTP/1.1",
            "get /lower", "curl http://x", "@v0 = 1", "@v1 = {{v0}}{{v0}}", "@v2 = {{v1}}{{v1}}",
            "@v0 = {{v2}}", "@w = {{v}}", "# @name a", "# @name b", "# @nmae a",
            "# @capture c = body (x)", "# @capture c = json $.a[0]", "# @capture d = header X",
            "# @capture e = body (", "# @until status 200", "# @until body lacks x",
            "# @timeout 3s", "# @timeout 1e9", "# @prompt", "// comment", "# comment",
            "Content-Type: text/plain", "Content-Type: application/x-www-form-urlencoded",
            "Content-Type: multipart/form-data; boundary=b", "Host: x", "X: {{c}}", "", "",
            "body line {{v0}}", "{{a.response.body.$.id}}", "{{a.response.headers.X}}",
            "{{b.request.body.*}}", "{{$guid}}", "{{$randomInt 1 3}}", "{{$randomInt 3 1}}",
            "{{$dotenv NOPE}}", "{{%v1}}", "{{c}}", "< ./f", "<@ ./f", "<", "?q=1", "&r=2",
            "{{", "}}", "{{}}", "@", "# @", "GET http://example.com/",
            "GET http://127.0.0.1:5000/x", "> {% %}", ">> out", "PUT /{{%v0}}",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,30}",
        1 => "(\\{\\{|\\}\\}|[@#$%./ =:a-z0-9]){0,16}",
    ]
}

/// One request of a well-formed `.http` file, with what it must parse to.
#[derive(Debug, Clone)]
struct Request {
    title: Option<String>,
    method: String,
    path: String,
    query: Vec<String>,
    headers: Vec<(String, String)>,
    body: Vec<String>,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::option::of("[A-Za-z][A-Za-z0-9 ]{0,10}[A-Za-z0-9]"),
        "[A-Z]{1,7}",
        "/[A-Za-z0-9._~!$'()*+,;=:@%/-]{0,20}",
        prop::collection::vec("[?&][a-z]{1,4}=[a-z0-9]{0,4}", 0..3),
        prop::collection::vec(
            (
                // Not `&` or `?` first: right after the request line, that continues the query.
                "[A-Za-z0-9!$%'*+.^_`|~-][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}",
                "([!-~]([ -~]{0,20}[!-~])?)?",
            ),
            0..4,
        ),
        prop::collection::vec("([a-z0-9\"':,=&]([a-z0-9\"':,=& ]{0,20})?)?", 0..4),
    )
        .prop_map(|(title, method, path, query, headers, mut body)| {
            // Trailing empty lines are not part of a body, by design.
            while body.last().is_some_and(String::is_empty) {
                body.pop();
            }
            Request {
                title,
                method,
                path,
                query,
                headers: headers
                    .into_iter()
                    .filter(|(name, value)| !name.starts_with("//") && !value.contains("{{"))
                    .collect(),
                body,
            }
        })
}

/// `requests` written as a `.http` file, and the line of each request line.
fn write_file(requests: &[Request], crlf: bool) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    let mut line = 1;
    let eol = if crlf { "\r\n" } else { "\n" };
    for (i, request) in requests.iter().enumerate() {
        if i > 0 || request.title.is_some() {
            let _ = write!(text, "###");
            if let Some(title) = &request.title {
                let _ = write!(text, " {title}");
            }
            text.push_str(eol);
            line += 1;
        }
        lines.push(line);
        let _ = write!(text, "{} {}{eol}", request.method, request.path);
        line += 1;
        for query in &request.query {
            let _ = write!(text, "    {query}{eol}");
            line += 1;
        }
        for (name, value) in &request.headers {
            let _ = write!(text, "{name}: {value}{eol}");
            line += 1;
        }
        if !request.body.is_empty() {
            text.push_str(eol);
            line += 1;
            for body in &request.body {
                let _ = write!(text, "{body}{eol}");
                line += 1;
            }
        }
    }
    (text, lines)
}

fn body_texts(lines: &[BodyLine]) -> Vec<&str> {
    lines
        .iter()
        .map(|line| match line {
            BodyLine::Text(template) => template.display(),
            BodyLine::Include { .. } => "<include>",
        })
        .collect()
}

fn assert_parsed_as_written(
    scenario: &Scenario,
    requests: &[Request],
    lines: &[usize],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(scenario.requests.len(), requests.len());
    for ((parsed, written), line) in scenario.requests.iter().zip(requests).zip(lines) {
        prop_assert_eq!(&parsed.method, &written.method);
        prop_assert_eq!(
            parsed.target.display(),
            format!("{}{}", written.path, written.query.concat())
        );
        prop_assert_eq!(parsed.line, *line);
        prop_assert_eq!(&parsed.title, &written.title);
        let headers: Vec<(&str, &str)> = parsed
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.display()))
            .collect();
        let expected: Vec<(&str, &str)> = written
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        prop_assert_eq!(headers, expected);
        prop_assert_eq!(body_texts(&parsed.body), written.body.clone());
    }
    Ok(())
}

/// A small edit of `text`: a character removed, inserted or replaced, or a line doubled.
fn mutate(text: &str, at: usize, what: u8, with: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = if chars.is_empty() {
        0
    } else {
        at % chars.len()
    };
    let mut out: Vec<char> = chars.clone();
    match what % 4 {
        0 if !out.is_empty() => {
            out.remove(at);
        }
        1 => out.insert(at, with),
        2 if !out.is_empty() => out[at] = with,
        _ => {
            let text: String = chars.iter().collect();
            let mut lines: Vec<&str> = text.split('\n').collect();
            let line = at % lines.len();
            lines.insert(line, lines[line]);
            return lines.join("\n");
        }
    }
    out.into_iter().collect()
}

fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '{', '}', '#', '@', '<', '>', ':', '\n', '\r', ' ', '\t', '/', '?', '&', '%', '$', '=',
            '"', '\\', '\u{feff}', 'é', '\0',
        ]),
        any::<char>(),
    ]
}

proptest! {
    #[test]
    fn any_text_parses_checks_and_builds_or_names_a_line(text in "\\PC{0,400}") {
        let _ = super::Template::parse(&text, 1);
        parse_check_build(&text)?;
    }

    #[test]
    fn files_of_http_lines_parse_check_and_build_or_name_a_line(
        lines in prop::collection::vec(http_line(), 0..60),
        crlf in any::<bool>(),
    ) {
        parse_check_build(&lines.join(if crlf { "\r\n" } else { "\n" }))?;
    }

    #[test]
    fn variables_made_of_variables_are_checked_and_built_in_bounded_time(
        levels in 1usize..80,
        fan_out in 1usize..4,
        forward in any::<bool>(),
    ) {
        // Level `k` refers `fan_out` times to level `k - 1`; `forward` writes the levels from
        // the top down, against the order they are needed in. Each level doubles the work of
        // a walk that visits every reference.
        let mut lines: Vec<String> = (0..=levels)
            .map(|k| match k {
                0 => "@v0 = ab".to_owned(),
                _ => format!("@v{k} = {}", format!("{{{{v{}}}}}", k - 1).repeat(fan_out)),
            })
            .collect();
        if forward {
            lines.reverse();
        }
        lines.push(format!("GET /{{{{v{levels}}}}}"));
        let text = lines.join("\n");
        parse_check_build(&text)?;
    }

    #[test]
    fn a_well_formed_file_parses_to_what_was_written(
        requests in prop::collection::vec(request(), 1..6),
        crlf in any::<bool>(),
    ) {
        let (text, lines) = write_file(&requests, crlf);
        let scenario = http_file::parse(Path::new("p.http"), &text)
            .map_err(|err| TestCaseError::fail(format!("{err}\n{text}")))?;
        assert_parsed_as_written(&scenario, &requests, &lines)?;
    }

    #[test]
    fn a_well_formed_file_edited_once_still_parses_or_names_a_line(
        requests in prop::collection::vec(request(), 1..5),
        at in any::<usize>(),
        what in any::<u8>(),
        with in interesting_char(),
    ) {
        let (text, _) = write_file(&requests, false);
        parse_check_build(&mutate(&text, at, what, with))?;
    }

    #[test]
    fn templates_without_placeholders_are_kept_as_they_are(text in "[^{}]{0,200}") {
        let template = super::Template::parse(&text, 1).unwrap();
        prop_assert_eq!(template.exprs().count(), 0);
        prop_assert_eq!(template.display(), text.as_str());
    }

    #[test]
    fn templates_round_trip_their_text(text in "\\PC{0,200}") {
        if let Ok(template) = super::Template::parse(&text, 7) {
            prop_assert_eq!(template.display(), text.as_str());
            prop_assert_eq!(template.line, 7);
        }
    }

    #[test]
    fn har_text_never_panics(text in prop_oneof![
        "\\PC{0,200}",
        har_like(),
    ]) {
        match har::parse(Path::new("r.har"), &text) {
            Ok(scenario) => prop_assert!(!scenario.requests.is_empty()),
            Err(err) => prop_assert!(err.to_string().starts_with("r.har"), "{err}"),
        }
    }
}

/// HAR files of one entry with generated fields.
fn har_like() -> impl Strategy<Value = String> {
    (
        "[A-Za-z]{0,7}",
        prop_oneof![
            Just("http://example.com/".to_owned()),
            "(https?://)?[a-z0-9.:\\[\\]@-]{0,20}(/[ -~]{0,20})?",
        ],
        prop::collection::vec(("[ -~&&[^\"\\\\]]{0,10}", "[ -~&&[^\"\\\\]]{0,10}"), 0..3),
        prop::option::of(("[a-z/;= -]{0,20}", "[ -~&&[^\"\\\\]]{0,20}")),
        -1i64..700,
    )
        .prop_map(|(method, url, headers, post, status)| {
            let headers: Vec<String> = headers
                .iter()
                .map(|(n, v)| format!("{{\"name\": \"{n}\", \"value\": \"{v}\"}}"))
                .collect();
            let post = post.map_or_else(String::new, |(mime, text)| {
                format!(", \"postData\": {{\"mimeType\": \"{mime}\", \"text\": \"{text}\"}}")
            });
            format!(
                "{{\"log\": {{\"entries\": [{{\"request\": {{\"method\": \"{method}\", \"url\": \"{url}\", \"headers\": [{}]{post}}}, \"response\": {{\"status\": {status}}}}}]}}}}",
                headers.join(", ")
            )
        })
}
