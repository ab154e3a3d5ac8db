//! Checks a scenario as a whole before anything starts, so that a mistake in it is an error
//! naming its file and line at once, not a failure half-way through a replay: every `{{name}}`
//! must be a file variable, `baseUrl`, or a value captured by an earlier request; every
//! `{{login.response…}}` must name an earlier request; file variables must not refer to each
//! other in a circle; `$dotenv` and `$processEnv` variables must exist; included files must be
//! readable regular files of at most 256 MiB; and an absolute URL must point at the app under
//! test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::include;
use super::template::Template;
use super::{BodyLine, Expr, RequestSpec, Scenario, System, Variable};
use crate::error::ScenarioError;
use crate::scenario::http_file::edit_distance;

/// The variable verify sets to the formation's public address.
pub const BASE_URL: &str = "baseUrl";

/// How deep file variables may refer to variables that refer to variables: a variable
/// without placeholders is 1 deep. Deeper nesting is refused here, so that checking and
/// substituting stay within a small, fixed recursion.
pub const MAX_NESTING: usize = 64;

/// What a scenario may refer to outside itself.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    /// The variables of the formation's `.env` files (`{{$dotenv NAME}}`).
    pub dotenv: &'a BTreeMap<String, String>,
    /// The formation's public port: absolute URLs must point there.
    pub public_port: u16,
}

/// Checks `scenario`; the first problem found is the error.
pub fn check(scenario: &Scenario, env: Environment<'_>) -> Result<(), ScenarioError> {
    let checker = Checker {
        scenario,
        env,
        variables: scenario
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v))
            .collect(),
        checked: RefCell::default(),
    };
    let mut first_capture = HashMap::new();
    for capture in scenario.requests.iter().flat_map(|r| &r.captures) {
        first_capture
            .entry(capture.name.as_str())
            .or_insert(capture);
    }
    // The depth of every variable already walked: each is walked once, however many
    // variables refer to it (`@b = {{a}}{{a}}`, `@c = {{b}}{{b}}`… doubles at each line).
    let mut depths = HashMap::new();
    for variable in &scenario.variables {
        checker.no_cycle(variable, &mut Vec::new(), &mut depths)?;
        if let Some(capture) = first_capture.get(variable.name.as_str()) {
            return Err(checker.error(
                capture.line,
                format!(
                    "`{}` is already a file variable (line {}); give the captured value another name",
                    capture.name, variable.line
                ),
            ));
        }
    }
    let mut known = Known::default();
    for request in &scenario.requests {
        // What a variable may refer to changes only between requests.
        checker.checked.borrow_mut().clear();
        checker.request(request, &known)?;
        known
            .captured
            .extend(request.captures.iter().map(|c| c.name.as_str()));
        known.named.extend(request.name.as_deref());
    }
    Ok(())
}

/// What earlier requests made available.
#[derive(Default)]
struct Known<'a> {
    captured: HashSet<&'a str>,
    named: BTreeSet<&'a str>,
}

struct Checker<'a> {
    scenario: &'a Scenario,
    env: Environment<'a>,
    variables: HashMap<&'a str, &'a Variable>,
    /// The variables whose placeholders were found fine for the current request.
    checked: RefCell<HashSet<&'a str>>,
}

impl<'a> Checker<'a> {
    fn error(&self, line: usize, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(&self.scenario.path, line, message)
    }

    fn variable(&self, name: &str) -> Option<&'a Variable> {
        self.variables.get(name).copied()
    }

    /// Refuses a circle of variables, or nesting deeper than [`MAX_NESTING`]; returns how deep
    /// `variable` nests.
    fn no_cycle(
        &self,
        variable: &'a Variable,
        path: &mut Vec<&'a str>,
        depths: &mut HashMap<&'a str, usize>,
    ) -> Result<usize, ScenarioError> {
        if let Some(depth) = depths.get(variable.name.as_str()) {
            return Ok(*depth);
        }
        if path.contains(&variable.name.as_str()) {
            path.push(&variable.name);
            return Err(self.error(
                variable.line,
                format!(
                    "variables refer to each other in a circle: {}",
                    path.join(" → ")
                ),
            ));
        }
        if path.len() == MAX_NESTING {
            // Refused on the way down too, so that the recursion stays this deep.
            return Err(self.too_deep(self.variable(path[0]).unwrap_or(variable)));
        }
        path.push(&variable.name);
        let mut depth = 1;
        for expr in variable.value.exprs() {
            if let Expr::Var(name) = expr
                && let Some(next) = self.variable(name)
            {
                depth = depth.max(1 + self.no_cycle(next, path, depths)?);
                if depth > MAX_NESTING {
                    return Err(self.too_deep(variable));
                }
            }
        }
        path.pop();
        depths.insert(&variable.name, depth);
        Ok(depth)
    }

    fn too_deep(&self, variable: &Variable) -> ScenarioError {
        self.error(
            variable.line,
            format!(
                "`{{{{{}}}}}` nests variables in variables more than {MAX_NESTING} deep; expected at most {MAX_NESTING} levels",
                variable.name
            ),
        )
    }

    fn request(&self, request: &RequestSpec, known: &Known<'_>) -> Result<(), ScenarioError> {
        self.template(&request.target, known)?;
        if let Some(first) = request.target.pieces.first()
            && let super::Piece::Text(text) = first
            && (text.starts_with("http://") || text.starts_with("https://"))
        {
            // The whole URL is known only once substituted; its origin usually is already.
            let origin_end = text[text.find("://").map_or(0, |i| i + 3)..]
                .find('/')
                .map(|i| i + text.find("://").unwrap_or(0) + 3);
            if let Some(end) = origin_end {
                app_path(&text[..end], self.env.public_port)
                    .map_err(|message| self.error(request.line, message))?;
            } else if request.target.pieces.len() == 1 {
                app_path(text, self.env.public_port)
                    .map_err(|message| self.error(request.line, message))?;
            }
        }
        for (_, value) in &request.headers {
            self.template(value, known)?;
        }
        for line in &request.body {
            match line {
                BodyLine::Text(template) => self.template(template, known)?,
                BodyLine::Include {
                    path,
                    substitute,
                    line,
                } => {
                    let text =
                        include::read(path).map_err(|err| self.error(*line, err.to_string()))?;
                    if *substitute {
                        let text = String::from_utf8_lossy(&text);
                        let template = Template::parse(&text, *line)
                            .map_err(|message| self.error(*line, message))?;
                        self.template(&template, known)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn template(&self, template: &Template, known: &Known<'_>) -> Result<(), ScenarioError> {
        for expr in template.exprs() {
            self.expr(expr, template.line, known, 0)?;
        }
        Ok(())
    }

    fn expr(
        &self,
        expr: &Expr,
        line: usize,
        known: &Known<'_>,
        depth: usize,
    ) -> Result<(), ScenarioError> {
        match expr {
            Expr::Var(name) => {
                if name == BASE_URL || known.captured.contains(name.as_str()) {
                    return Ok(());
                }
                if let Some(variable) = self.variable(name) {
                    // Cycles and deep nesting were ruled out first; the depth bound is only a
                    // safeguard.
                    if depth < MAX_NESTING && self.checked.borrow_mut().insert(&variable.name) {
                        for inner in variable.value.exprs() {
                            self.expr(inner, line, known, depth + 1)?;
                        }
                    }
                    return Ok(());
                }
                let later = self
                    .scenario
                    .requests
                    .iter()
                    .flat_map(|r| r.captures.iter().map(move |c| (r, c)))
                    .find(|(_, c)| c.name == *name);
                let message = match later {
                    Some((request, capture)) => format!(
                        "`{{{{{name}}}}}` is captured only later, by request #{} (line {}); a value can be used only after the request that captures it",
                        request.index, capture.line
                    ),
                    None => {
                        let candidates = self
                            .scenario
                            .variables
                            .iter()
                            .map(|v| v.name.as_str())
                            .chain(known.captured.iter().copied())
                            .chain([BASE_URL]);
                        format!(
                            "unknown variable `{{{{{name}}}}}`{}; define it with `@{name} = value`, or capture it from an earlier answer with `# @capture {name} = …`",
                            did_you_mean(name, candidates)
                        )
                    }
                };
                Err(self.error(line, message))
            }
            Expr::Request { name, .. } => {
                if known.named.contains(&name.as_str()) {
                    return Ok(());
                }
                let later = self
                    .scenario
                    .requests
                    .iter()
                    .find(|r| r.name.as_deref() == Some(name));
                let message = match later {
                    Some(request) => format!(
                        "`{}` refers to request `{name}`, which comes later (#{}, line {}); a request can only use the answers of earlier ones",
                        expr.display(),
                        request.index,
                        request.line
                    ),
                    None => format!(
                        "`{}` refers to a request named `{name}`, but no earlier request has `# @name {name}`{}",
                        expr.display(),
                        did_you_mean(name, known.named.iter().copied())
                    ),
                };
                Err(self.error(line, message))
            }
            Expr::System(System::Dotenv(name)) => {
                if self.env.dotenv.contains_key(name) {
                    Ok(())
                } else {
                    Err(self.error(
                        line,
                        format!(
                            "`{}`: the formation's .env files do not set `{name}`",
                            expr.display()
                        ),
                    ))
                }
            }
            Expr::System(System::ProcessEnv(name)) => {
                if std::env::var_os(name).is_some() {
                    Ok(())
                } else {
                    Err(self.error(
                        line,
                        format!(
                            "`{}`: the environment variable `{name}` is not set",
                            expr.display()
                        ),
                    ))
                }
            }
            Expr::System(_) => Ok(()),
        }
    }
}

fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .filter(|c| edit_distance(c, name) <= 2.max(name.len() / 4))
        .min_by_key(|c| edit_distance(c, name))
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// The path of `url` on the app under test: a path stays as it is; an absolute URL must be
/// `http://` on the loopback interface at the formation's public port.
pub fn app_path(url: &str, public_port: u16) -> Result<String, String> {
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    let public = format!("http://127.0.0.1:{public_port}");
    let another = || {
        format!(
            "`{url}` points at another host than the app under test ({public}); address the app by a path (`GET /cart`) or through `{{{{baseUrl}}}}`"
        )
    };
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with("https://") {
            return Err(format!(
                "`{url}`: verify talks to the formation over plain HTTP; use a path (`GET /cart`) or `{{{{baseUrl}}}}`"
            ));
        }
        return Err(format!(
            "`{url}` is neither a path (`/cart`) nor an http:// URL"
        ));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest[..end].to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            (host.to_owned(), port.parse::<u16>().map_err(|_| another())?)
        }
        _ => (authority.clone(), 80),
    };
    let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    if !loopback || port != public_port {
        return Err(another());
    }
    let path = &rest[end..];
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_address_is_the_app() {
        assert_eq!(app_path("/a?b", 5000).unwrap(), "/a?b");
        assert_eq!(app_path("http://127.0.0.1:5000/x", 5000).unwrap(), "/x");
        assert_eq!(app_path("http://localhost:5000", 5000).unwrap(), "/");
        assert_eq!(
            app_path("http://LOCALHOST:5000?q=1", 5000).unwrap(),
            "/?q=1"
        );
        for other in [
            "http://example.com/x",
            "http://127.0.0.1:5001/x",
            "http://localhost/x",
            "https://127.0.0.1:5000/x",
            "ftp://x",
        ] {
            assert!(app_path(other, 5000).is_err(), "{other}");
        }
        assert!(app_path("http://localhost/", 80).is_ok());
        assert!(
            app_path("http://example.com/x", 5000)
                .unwrap_err()
                .contains("points at another host")
        );
    }
}
