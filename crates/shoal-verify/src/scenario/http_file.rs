//! `.http` files, as the VS Code REST Client and the JetBrains HTTP Client write them:
//!
//! ```text
//! @user = alice-{{$guid}}          file variables, usable anywhere in the file
//!
//! ### Sign-up form                 `###` separates requests; text after it is a title
//! # @name form                     name the request, to refer to it later
//! # @capture csrf = body name="csrf" value="([^"]+)"
//! GET /signup
//!
//! ###
//! POST {{baseUrl}}/signup          METHOD URL [HTTP/1.1]; a bare URL is a GET
//! Content-Type: application/x-www-form-urlencoded
//!                                  an empty line, then the body
//! user={{user}}&csrf={{csrf}}
//! ```
//!
//! Comments are lines starting with `#` or `//` (outside bodies). Lines right after the request
//! line that start with `?` or `&` continue its query. A body line `< ./file` includes a file
//! as is, `<@ ./file` with `{{…}}` substituted in it (paths are relative to the `.http` file).
//!
//! Directives (comments that start with `@`, before the body): `@name`, `@no-cookie-jar`,
//! `@no-redirect` (verify never follows redirects anyway), `@note`, and verify's own
//! `@capture`, `@until` and `@timeout`:
//!
//! - `# @capture NAME = body REGEX`: the first group of REGEX's first match in the body (the
//!   whole match when REGEX has no group) becomes `{{NAME}}` for later requests;
//! - `# @capture NAME = header HEADER [REGEX]`: the same from a response header;
//! - `# @capture NAME = json PATH`: a value of a JSON body, e.g. `$.items[0].id`;
//! - `# @until status 200`, `# @until body contains TEXT`, `# @until body lacks TEXT`: send
//!   the request again (every 200 ms, `GET` and `HEAD` only) until the answer meets the
//!   condition, for work that a worker finishes in the background;
//! - `# @timeout 30s`: how long to wait for an answer, and for `@until` (default 30 s).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use super::template::{Template, is_name};
use super::{BodyLine, Capture, CaptureFrom, RequestSpec, Scenario, Until, Variable};
use crate::error::ScenarioError;
use crate::jsonpath::JsonPath;

/// Directives this parser knows; others starting with `@` are plain comments, unless they look
/// like a typo of one of these.
const DIRECTIVES: [&str; 10] = [
    "name",
    "capture",
    "until",
    "timeout",
    "no-cookie-jar",
    "no-redirect",
    "no-log",
    "note",
    "prompt",
    "connection-timeout",
];

/// Parses the text of the `.http` file `path`.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut parser = Parser {
        path,
        dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        variables: Vec::new(),
        requests: Vec::new(),
        names: HashSet::new(),
    };
    let mut start = 0;
    let mut title = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.trim_start().strip_prefix("###") {
            parser.block(&lines[start..i], start + 1, title.take())?;
            start = i + 1;
            let rest = rest.trim();
            title = (!rest.is_empty()).then(|| rest.to_owned());
        }
    }
    parser.block(&lines[start..], start + 1, title)?;
    if parser.requests.is_empty() {
        return Err(ScenarioError::File {
            path: path.to_path_buf(),
            message: "no requests found; expected lines such as `GET /path`, separated by `###`"
                .into(),
        });
    }
    Ok(Scenario {
        path: path.to_path_buf(),
        variables: parser.variables,
        requests: parser.requests,
        notes: Vec::new(),
    })
}

struct Parser<'a> {
    path: &'a Path,
    dir: PathBuf,
    variables: Vec<Variable>,
    requests: Vec<RequestSpec>,
    /// The names of variables and of requests so far, to refuse a second one without a scan
    /// of all earlier ones (a long generated file stays linear).
    names: HashSet<(Kind, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Variable,
    Request,
}

/// Directives seen before the request they apply to.
#[derive(Default)]
struct Pending {
    name: Option<String>,
    captures: Vec<Capture>,
    until: Option<(Until, usize)>,
    timeout: Option<Duration>,
    no_cookie_jar: bool,
    /// The first directive's line, for a directive that has no request.
    first_line: Option<usize>,
}

impl Parser<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(self.path, line, message)
    }

    /// One block between `###` lines; `first` is the line number of its first line.
    fn block(
        &mut self,
        block: &[&str],
        first: usize,
        title: Option<String>,
    ) -> Result<(), ScenarioError> {
        let mut pending = Pending::default();
        let mut at = 0;
        // Comments, directives and file variables, up to the request line.
        while at < block.len() {
            let line_no = first + at;
            let text = block[at].trim();
            if text.is_empty() {
                at += 1;
                continue;
            }
            if let Some(comment) = comment(text) {
                self.directive(comment, line_no, &mut pending)?;
                at += 1;
                continue;
            }
            if let Some(definition) = text.strip_prefix('@') {
                self.variable(definition, line_no)?;
                at += 1;
                continue;
            }
            break;
        }
        if at == block.len() {
            if let Some(line) = pending.first_line {
                return Err(self.error(line, "this directive is not followed by a request"));
            }
            return Ok(());
        }

        let request_line = first + at;
        let (method, mut target) = self.request_line(block[at].trim(), request_line)?;
        at += 1;
        while at < block.len() {
            let text = block[at].trim();
            if text.starts_with('?') || text.starts_with('&') {
                target.push_str(text);
                at += 1;
            } else {
                break;
            }
        }
        let target = self.template(&target, request_line)?;

        let mut headers = Vec::new();
        while at < block.len() {
            let line_no = first + at;
            let text = block[at].trim();
            at += 1;
            if text.is_empty() {
                break;
            }
            if let Some(comment) = comment(text) {
                self.directive(comment, line_no, &mut pending)?;
                continue;
            }
            let (name, value) = header(text).ok_or_else(|| {
                self.error(
                    line_no,
                    format!(
                        "expected a header `Name: value`, or an empty line before the body; found `{text}`"
                    ),
                )
            })?;
            headers.push((name.to_owned(), self.template(value, line_no)?));
        }

        let mut end = block.len();
        while end > at && block[end - 1].trim().is_empty() {
            end -= 1;
        }
        let mut body = Vec::new();
        for (offset, text) in block[at..end].iter().enumerate() {
            body.push(self.body_line(text, first + at + offset)?);
        }

        if let Some(name) = &pending.name
            && !self.names.insert((Kind::Request, name.clone()))
        {
            return Err(self.error(
                request_line,
                format!("a request named `{name}` comes earlier in the file; names must be unique"),
            ));
        }
        let until = match pending.until {
            Some((until, line)) => {
                if method != "GET" && method != "HEAD" {
                    return Err(self.error(
                        line,
                        format!(
                            "`@until` sends the request again, so it is only for GET and HEAD, not {method}"
                        ),
                    ));
                }
                Some(until)
            }
            None => None,
        };
        self.requests.push(RequestSpec {
            index: self.requests.len() + 1,
            line: request_line,
            name: pending.name,
            title,
            method,
            target,
            headers,
            body,
            captures: pending.captures,
            until,
            timeout: pending.timeout,
            no_cookie_jar: pending.no_cookie_jar,
        });
        Ok(())
    }

    fn template(&self, text: &str, line: usize) -> Result<Template, ScenarioError> {
        Template::parse(text, line).map_err(|message| self.error(line, message))
    }

    fn variable(&mut self, definition: &str, line: usize) -> Result<(), ScenarioError> {
        let (name, value) = definition.split_once('=').ok_or_else(|| {
            self.error(
                line,
                format!("expected a variable definition `@name = value`; found `@{definition}`"),
            )
        })?;
        let name = name.trim();
        if !is_name(name) {
            return Err(self.error(line, format!("`{name}` is not a variable name")));
        }
        if !self.names.insert((Kind::Variable, name.to_owned())) {
            return Err(self.error(line, format!("variable `{name}` is defined twice")));
        }
        let value = self.template(value.trim(), line)?;
        self.variables.push(Variable {
            name: name.to_owned(),
            value,
            line,
        });
        Ok(())
    }

    /// `METHOD URL [HTTP/1.1]`, or a bare URL (a GET).
    fn request_line(&self, text: &str, line: usize) -> Result<(String, String), ScenarioError> {
        if text.starts_with("curl ") {
            return Err(self.error(
                line,
                "curl commands are not supported; write the request as `METHOD /path` with headers below it",
            ));
        }
        let (first, rest) = text
            .split_once(char::is_whitespace)
            .map_or((text, ""), |(a, b)| (a, b.trim()));
        let (method, url) = if !rest.is_empty() && first.bytes().all(|b| b.is_ascii_uppercase()) {
            (first.to_owned(), rest)
        } else if !rest.is_empty()
            && first.bytes().all(|b| b.is_ascii_alphabetic())
            && looks_like_url(rest)
        {
            return Err(self.error(
                line,
                format!(
                    "methods are written in capitals: `{} {rest}`",
                    first.to_ascii_uppercase()
                ),
            ));
        } else {
            ("GET".to_owned(), text)
        };
        let url = match url.rsplit_once(char::is_whitespace) {
            Some((url, version)) if version.starts_with("HTTP/") => url.trim_end(),
            _ => url,
        };
        if !looks_like_url(url) {
            return Err(self.error(
                line,
                format!(
                    "expected a request line such as `GET /path` or `POST {{{{baseUrl}}}}/path`; found `{text}`"
                ),
            ));
        }
        Ok((method, url.to_owned()))
    }

    fn body_line(&self, text: &str, line: usize) -> Result<BodyLine, ScenarioError> {
        if text.starts_with("> {%") || text.starts_with(">>") {
            return Err(self.error(
                line,
                "response handler scripts and `>>` are not supported; take values from answers with `# @capture`",
            ));
        }
        if looks_like_request_line(text) {
            return Err(self.error(
                line,
                format!(
                    "`{}` looks like a request line inside a body; separate requests with a `###` line",
                    text.trim()
                ),
            ));
        }
        let include = text
            .strip_prefix("<@")
            .map(|p| (p, true))
            .or_else(|| text.strip_prefix("< ").map(|p| (p, false)));
        if let Some((file, substitute)) = include {
            let file = file.trim();
            if file.is_empty() {
                return Err(self.error(line, "`<` names no file to include"));
            }
            return Ok(BodyLine::Include {
                path: self.dir.join(file),
                substitute,
                line,
            });
        }
        Ok(BodyLine::Text(self.template(text, line)?))
    }

    fn directive(
        &self,
        comment: &str,
        line: usize,
        pending: &mut Pending,
    ) -> Result<(), ScenarioError> {
        let Some(rest) = comment.strip_prefix('@') else {
            return Ok(());
        };
        let (word, argument) = rest
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .map_or((rest, ""), |(w, a)| {
                (w, a.trim().trim_start_matches('=').trim())
            });
        if !DIRECTIVES.contains(&word) {
            if let Some(known) = DIRECTIVES
                .iter()
                .find(|d| edit_distance(d, word) <= 2 && word.len() > 2)
            {
                return Err(self.error(
                    line,
                    format!("unknown directive `@{word}`; did you mean `@{known}`?"),
                ));
            }
            return Ok(());
        }
        pending.first_line.get_or_insert(line);
        match word {
            "name" => {
                if !is_name(argument) {
                    return Err(self.error(
                        line,
                        format!("`@name` needs a request name such as `login`; found `{argument}`"),
                    ));
                }
                pending.name = Some(argument.to_owned());
            }
            "capture" => pending.captures.push(self.capture(argument, line)?),
            "until" => {
                if pending.until.is_some() {
                    return Err(self.error(line, "only one `@until` per request"));
                }
                pending.until = Some((self.until(argument, line)?, line));
            }
            "timeout" | "connection-timeout" => {
                pending.timeout = Some(parse_duration(argument).ok_or_else(|| {
                    self.error(
                        line,
                        format!(
                            "`{argument}` is not a duration; expected e.g. `30s`, `500ms` or `2m`"
                        ),
                    )
                })?);
            }
            "no-cookie-jar" => pending.no_cookie_jar = true,
            "prompt" => {
                return Err(self.error(
                    line,
                    "`@prompt` needs someone at the keyboard; define the value with `@name = value` instead",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn capture(&self, text: &str, line: usize) -> Result<Capture, ScenarioError> {
        let usage = "expected `@capture NAME = body REGEX`, `@capture NAME = header HEADER [REGEX]` or `@capture NAME = json PATH`";
        let (name, rest) = text
            .split_once('=')
            .ok_or_else(|| self.error(line, format!("{usage}; found `@capture {text}`")))?;
        let name = name.trim();
        if !is_name(name) {
            return Err(self.error(line, format!("`{name}` is not a variable name; {usage}")));
        }
        let rest = rest.trim();
        let (kind, argument) = rest
            .split_once(char::is_whitespace)
            .map_or((rest, ""), |(k, a)| (k, a.trim()));
        let regex = |pattern: &str| {
            Regex::new(pattern)
                .map_err(|err| self.error(line, format!("`{pattern}` is not a valid regex: {err}")))
        };
        let from = match kind {
            "body" if !argument.is_empty() => CaptureFrom::Body(regex(argument)?),
            "header" if !argument.is_empty() => {
                let (header_name, pattern) = argument
                    .split_once(char::is_whitespace)
                    .map_or((argument, ""), |(h, p)| (h, p.trim()));
                let header_name = header_name.trim_end_matches(':');
                let pattern = (!pattern.is_empty()).then(|| regex(pattern)).transpose()?;
                CaptureFrom::Header(header_name.to_owned(), pattern)
            }
            "json" if !argument.is_empty() => CaptureFrom::Json(
                JsonPath::parse(argument).map_err(|message| self.error(line, message))?,
            ),
            _ => return Err(self.error(line, format!("{usage}; found `@capture {text}`"))),
        };
        Ok(Capture {
            name: name.to_owned(),
            from,
            line,
        })
    }

    fn until(&self, text: &str, line: usize) -> Result<Until, ScenarioError> {
        let unquote = |t: &str| {
            let t = t.trim();
            t.strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(t)
                .to_owned()
        };
        if let Some(status) = text.strip_prefix("status") {
            if let Ok(status) = status.trim().parse::<u16>()
                && (100..600).contains(&status)
            {
                return Ok(Until::Status(status));
            }
        } else if let Some(needle) = text.strip_prefix("body contains ") {
            return Ok(Until::Contains(unquote(needle)));
        } else if let Some(needle) = text.strip_prefix("body lacks ") {
            return Ok(Until::Lacks(unquote(needle)));
        }
        Err(self.error(
            line,
            format!(
                "expected `@until status CODE`, `@until body contains TEXT` or `@until body lacks TEXT`; found `@until {text}`"
            ),
        ))
    }
}

/// The text of a comment line (`# …` or `// …`), trimmed.
fn comment(text: &str) -> Option<&str> {
    text.strip_prefix('#')
        .or_else(|| text.strip_prefix("//"))
        .map(str::trim)
}

/// `Name: value`, with a valid header name.
fn header(text: &str) -> Option<(&str, &str)> {
    let (name, value) = text.split_once(':')?;
    let name = name.trim_end();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    valid.then(|| (name, value.trim()))
}

fn looks_like_url(text: &str) -> bool {
    text.starts_with('/')
        || text.starts_with("http://")
        || text.starts_with("https://")
        || text.starts_with("{{")
}

/// `GET /x`, `POST {{baseUrl}}/x`: a line that starts a request.
fn looks_like_request_line(text: &str) -> bool {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let mut words = text.split_whitespace();
    let (Some(method), Some(url)) = (words.next(), words.next()) else {
        return false;
    };
    METHODS.contains(&method) && looks_like_url(url)
}

/// `30s`, `500ms`, `2m`, or a number of seconds (JetBrains writes `@timeout 600`).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let value: f64 = text[..split].parse().ok()?;
    let seconds = match text[split..].trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return None,
    };
    (seconds > 0.0 && seconds <= 86_400.0).then(|| Duration::from_secs_f64(seconds))
}

/// Levenshtein distance, for "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}
