//! Text with `{{…}}` placeholders, as the REST Client writes them:
//!
//! - `{{name}}`: a file variable (`@name = value`), a value captured by `# @capture`, or
//!   `baseUrl` (the formation's public address, set by verify);
//! - `{{login.response.body.$.id}}`, `{{login.response.body.*}}`,
//!   `{{login.response.headers.Location}}`, `{{login.request.body.*}}`: parts of an earlier
//!   request named with `# @name login`, and of its answer;
//! - `{{$guid}}`, `{{$randomInt 1 100}}`, `{{$timestamp}}`, `{{$isoTimestamp}}`,
//!   `{{$datetime iso8601}}`, `{{$processEnv HOME}}`, `{{$dotenv KEY}}`: system variables;
//! - `{{%name}}`: any of these, percent-encoded.

use crate::jsonpath::JsonPath;

/// A string with placeholders, and the line it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub pieces: Vec<Piece>,
    /// The text as written.
    pub raw: String,
    pub line: usize,
}

/// Literal text or a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    /// A placeholder; `encode` is `{{%…}}`.
    Expr {
        expr: Expr,
        encode: bool,
    },
}

/// What a placeholder stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A file variable, a captured value, or `baseUrl`.
    Var(String),
    /// A part of an earlier named request or its answer.
    Request {
        name: String,
        side: Side,
        source: Source,
    },
    System(System),
}

/// The request as sent, or its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// Which part of a request or answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Body(BodyPath),
    Header(String),
}

/// The whole body (`*`) or a JSON path in it.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyPath {
    Whole,
    Json(JsonPath),
}

/// `{{$…}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum System {
    /// `$guid`, `$uuid`, `$random.uuid`: a new random UUID (v4).
    Guid,
    /// `$randomInt MIN MAX`: a random integer, MIN included, MAX excluded.
    RandomInt(i64, i64),
    /// `$timestamp`: seconds since the epoch.
    Timestamp,
    /// `$isoTimestamp`, `$datetime iso8601`: UTC time as ISO 8601.
    IsoTimestamp,
    /// `$datetime rfc1123`: UTC time as an HTTP date.
    Rfc1123,
    /// `$processEnv NAME`: a variable of shoal's own environment.
    ProcessEnv(String),
    /// `$dotenv NAME`: a variable of the formation's `.env` files.
    Dotenv(String),
}

impl Template {
    /// A template without placeholders.
    pub fn literal(text: impl Into<String>, line: usize) -> Template {
        let text = text.into();
        Template {
            pieces: vec![Piece::Text(text.clone())],
            raw: text,
            line,
        }
    }

    /// Parses `text`; errors are messages for the line `line`.
    pub fn parse(text: &str, line: usize) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without a closing `}}}}` in `{text}`"))?;
            let inner = after[..close].trim();
            let (encode, inner) = match inner.strip_prefix('%') {
                Some(inner) => (true, inner.trim_start()),
                None => (false, inner),
            };
            pieces.push(Piece::Expr {
                expr: parse_expr(inner)?,
                encode,
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template {
            pieces,
            raw: text.to_owned(),
            line,
        })
    }

    /// The text as written.
    pub fn display(&self) -> &str {
        &self.raw
    }

    /// The placeholders, in order.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Expr { expr, .. } => Some(expr),
            Piece::Text(_) => None,
        })
    }
}

/// Names a variable may have: `baseUrl`, `user_id`, `api.v2`, `csrf-token`.
pub(crate) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn parse_expr(inner: &str) -> Result<Expr, String> {
    if inner.is_empty() {
        return Err("empty `{{}}`; expected a variable name inside".into());
    }
    if let Some(system) = inner.strip_prefix('$') {
        return parse_system(system).map(Expr::System);
    }
    for (marker, side) in [(".response.", Side::Response), (".request.", Side::Request)] {
        if let Some(at) = inner.find(marker) {
            let name = &inner[..at];
            let rest = &inner[at + marker.len()..];
            if !is_name(name) {
                return Err(format!(
                    "`{name}` is not a request name (in `{{{{{inner}}}}}`)"
                ));
            }
            let source = if let Some(path) = rest.strip_prefix("body.") {
                let path = path.trim();
                if path == "*" {
                    Source::Body(BodyPath::Whole)
                } else if path.starts_with('$') {
                    Source::Body(BodyPath::Json(JsonPath::parse(path)?))
                } else if path.starts_with('/') {
                    return Err(format!(
                        "XPath (`{path}`) is not supported; use `# @capture NAME = body REGEX` for XML and HTML"
                    ));
                } else {
                    return Err(format!(
                        "`{path}` is not a body path; expected `*` (the whole body) or a JSON path such as `$.id`"
                    ));
                }
            } else if let Some(header) = rest.strip_prefix("headers.") {
                let header = header.trim();
                if header.is_empty() {
                    return Err(format!("`{{{{{inner}}}}}` names no header"));
                }
                Source::Header(header.to_owned())
            } else {
                return Err(format!(
                    "`{{{{{inner}}}}}`: expected `{name}.{}.body.…` or `{name}.{}.headers.NAME`",
                    marker.trim_matches('.'),
                    marker.trim_matches('.')
                ));
            };
            return Ok(Expr::Request {
                name: name.to_owned(),
                side,
                source,
            });
        }
    }
    if is_name(inner) {
        Ok(Expr::Var(inner.to_owned()))
    } else {
        Err(format!(
            "`{inner}` is not a variable name (in `{{{{{inner}}}}}`)"
        ))
    }
}

fn parse_system(text: &str) -> Result<System, String> {
    let mut words = text.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let no_args = |system: System| {
        if args.is_empty() {
            Ok(system)
        } else {
            Err(format!(
                "`${name}` takes no arguments here (offsets are not supported)"
            ))
        }
    };
    let one_name = |make: fn(String) -> System| match args.as_slice() {
        [var] if !var.starts_with('%') => Ok(make((*var).to_owned())),
        _ => Err(format!(
            "`${name}` takes one variable name, e.g. `{{{{${name} HOME}}}}`"
        )),
    };
    match name {
        "guid" | "uuid" | "random.uuid" => no_args(System::Guid),
        "randomInt" => match args.as_slice() {
            [] => Ok(System::RandomInt(0, 1000)),
            [min, max] => match (min.parse::<i64>(), max.parse::<i64>()) {
                (Ok(min), Ok(max)) if min < max => Ok(System::RandomInt(min, max)),
                _ => Err(format!(
                    "`$randomInt {min} {max}`: expected two whole numbers, the first smaller"
                )),
            },
            _ => Err(
                "`$randomInt` takes a minimum and a maximum, e.g. `{{$randomInt 1 100}}`".into(),
            ),
        },
        "timestamp" => no_args(System::Timestamp),
        "isoTimestamp" => no_args(System::IsoTimestamp),
        "datetime" | "localDatetime" => match args.as_slice() {
            ["iso8601"] => Ok(System::IsoTimestamp),
            ["rfc1123"] => Ok(System::Rfc1123),
            _ => Err(format!(
                "`${name}` supports `iso8601` or `rfc1123` (without offsets)"
            )),
        },
        "processEnv" => one_name(System::ProcessEnv),
        "dotenv" => one_name(System::Dotenv),
        _ => Err(format!(
            "unknown system variable `${name}`; expected one of `$guid`, `$randomInt`, `$timestamp`, `$isoTimestamp`, `$datetime`, `$processEnv`, `$dotenv`"
        )),
    }
}

impl Expr {
    /// `{{…}}` as written, for messages.
    pub fn display(&self) -> String {
        match self {
            Expr::Var(name) => format!("{{{{{name}}}}}"),
            Expr::Request { name, side, source } => {
                let side = match side {
                    Side::Request => "request",
                    Side::Response => "response",
                };
                let part = match source {
                    Source::Body(BodyPath::Whole) => "body.*".to_owned(),
                    Source::Body(BodyPath::Json(path)) => format!("body.{path}"),
                    Source::Header(header) => format!("headers.{header}"),
                };
                format!("{{{{{name}.{side}.{part}}}}}")
            }
            Expr::System(system) => format!("{{{{{}}}}}", system.display()),
        }
    }
}

impl System {
    fn display(&self) -> String {
        match self {
            System::Guid => "$guid".into(),
            System::RandomInt(min, max) => format!("$randomInt {min} {max}"),
            System::Timestamp => "$timestamp".into(),
            System::IsoTimestamp => "$isoTimestamp".into(),
            System::Rfc1123 => "$datetime rfc1123".into(),
            System::ProcessEnv(name) => format!("$processEnv {name}"),
            System::Dotenv(name) => format!("$dotenv {name}"),
        }
    }
}
