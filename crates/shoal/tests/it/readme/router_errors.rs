//! The README's table of router errors (`| status | code | when |`) against the router's
//! source, and each code produced: most by the real `shoal` here, the instance failures by the
//! router's own tests (checked to still assert them).

use std::collections::BTreeSet;
use std::path::Path;

use super::{Pinned, assert_no_problems, code_spans, readme, root, section, tables};
use crate::support::{App, DEADLINE, free_port};

/// How a code is produced.
enum Produced {
    /// By this request to a formation of one `FAKE serve` web instance (`--body-timeout 0.5`).
    Here(&'static str),
    /// After the formation is scaled to `web=0`, by this request.
    WithoutInstances(&'static str),
    /// By a test of the router, with an instance that misbehaves on purpose.
    There(Pinned),
}

const PRODUCED: &[(&str, Produced)] = &[
    (
        "missing_host",
        Produced::Here("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
    ),
    (
        "conflicting_host",
        Produced::Here("GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n"),
    ),
    (
        "invalid_host",
        Produced::Here("GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n"),
    ),
    (
        "transfer_encoding_not_supported",
        Produced::Here(
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        ),
    ),
    (
        "incomplete_request_body",
        Produced::Here(
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ),
    ),
    (
        "body_timeout",
        Produced::Here("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nab"),
    ),
    (
        "method_not_supported",
        Produced::Here("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n"),
    ),
    (
        "no_ready_instance",
        Produced::WithoutInstances("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
    ),
    (
        "instance_unreachable",
        Produced::There(Pinned {
            file: "shoal-router/tests/router/failover.rs",
            test: "the_last_instances_are_never_all_taken_out",
            needle: r#"answer.headers["x-shoal-error"], "instance_unreachable""#,
        }),
    ),
    (
        "instance_failed",
        Produced::There(Pinned {
            file: "shoal-router/tests/router/failover.rs",
            test: "a_post_that_reached_an_instance_is_never_retried",
            needle: r#"answer.headers["x-shoal-error"], "instance_failed""#,
        }),
    ),
    (
        "queue_full",
        Produced::There(Pinned {
            file: "shoal-router/tests/router/queue.rs",
            test: "the_queue_timeout_and_a_full_queue_answer_503",
            needle: r#"full.headers["x-shoal-error"], "queue_full""#,
        }),
    ),
    (
        "queue_timeout",
        Produced::There(Pinned {
            file: "shoal-router/tests/router/queue.rs",
            test: "the_queue_timeout_and_a_full_queue_answer_503",
            needle: r#"timed_out.headers["x-shoal-error"], "queue_timeout""#,
        }),
    ),
    (
        "instance_timeout",
        Produced::There(Pinned {
            file: "shoal-router/tests/router/hardening.rs",
            test: "a_slow_instance_gets_504",
            needle: r#"answer.headers["x-shoal-error"], "instance_timeout""#,
        }),
    ),
];

/// Codes in the router's source that no client can get, because hyper's HTTP/1 parser handles
/// the request first; the README leaves them out. Each comes with the request that would be
/// theirs and the start of what the client gets instead.
const UNREACHABLE: &[(&str, &str, &str)] = &[
    (
        // hyper refuses differing lengths itself (a bare 400) and keeps one of equal ones.
        "conflicting_content_length",
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        "HTTP/1.1 400",
    ),
    (
        // hyper drops `Content-Length` beside `chunked` (RFC 9112 §6.3) and closes afterwards.
        "transfer_encoding_with_content_length",
        "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200",
    ),
];

/// `(status, code)` for every code in the README's router error table.
fn documented() -> Vec<(String, String)> {
    let text = readme();
    let table = tables(section(&text, "## The router"))
        .into_iter()
        .find(|t| t.header.first().map(String::as_str) == Some("status"))
        .expect("the router error table");
    table
        .rows
        .iter()
        .flat_map(|row| {
            code_spans(&row[1])
                .into_iter()
                .map(|code| (row[0].clone(), code.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The codes the router's source can put in `X-Shoal-Error`: the literals of
/// `Failure::code` (errors.rs), of `Failure::BadRequest("…")` anywhere, and the `Err("…")`
/// codes of headers.rs, whose checks become `BadRequest` in proxy.rs.
fn in_source() -> BTreeSet<String> {
    let src = root().join("crates/shoal-router/src");
    let read = |name: &str| {
        let text = std::fs::read_to_string(src.join(name)).expect("read the router's source");
        // Unit tests mention codes without producing them.
        text.split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let mut codes = BTreeSet::new();
    let errors = read("errors.rs");
    let code_fn = errors
        .split_once("fn code(")
        .expect("errors.rs has `fn code`")
        .1;
    let code_fn = &code_fn[..code_fn.find("\n    }\n").unwrap_or(code_fn.len())];
    codes.extend(literals(code_fn, "\""));
    codes.extend(literals(&read("headers.rs"), "Err(\""));
    for file in rust_files(&src) {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        codes.extend(literals(&read(&relative), "BadRequest(\""));
    }
    codes
}

/// The snake_case words right after each `before` (which ends with a quote).
fn literals(text: &str, before: &str) -> Vec<String> {
    text.split(before)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|word| {
            word.contains('_') && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read the router's source")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn router_errors_table_lists_every_code_of_the_router() {
    let readme: BTreeSet<String> = documented().into_iter().map(|(_, code)| code).collect();
    let mut source = in_source();
    assert!(
        source.contains("no_ready_instance") && source.contains("missing_host"),
        "the source parser found too little: {source:?}"
    );
    for (code, _, _) in UNREACHABLE {
        assert!(
            source.remove(*code),
            "`{code}` is listed as unreachable but is no longer in the router's source"
        );
    }
    let produced: BTreeSet<String> = PRODUCED.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(
        readme, source,
        "README router error codes (left) against the router's source (right)"
    );
    assert_eq!(
        readme, produced,
        "README router error codes (left) against the codes produced in PRODUCED (right): \
         a new code needs a test that produces it, listed there"
    );
    let problems: Vec<String> = PRODUCED
        .iter()
        .filter_map(|(_, how)| match how {
            Produced::There(pinned) => pinned.problem(),
            _ => None,
        })
        .collect();
    assert_no_problems(
        "router error codes produced by the router's tests",
        &problems,
    );
}

/// One request on a new connection; everything the router sent until it closed.
fn send(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn router_errors_come_with_their_status_and_code() {
    let statuses: Vec<(String, String)> = documented();
    let status_of = |code: &str| {
        statuses
            .iter()
            .find(|(_, c)| c == code)
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| panic!("`{code}` is not in the README's table"))
    };
    let app = App::new("web: FAKE serve\n");
    let port = free_port();
    let shoal = app.spawn(&["start", "-p", &port.to_string(), "--body-timeout", "0.5"]);
    shoal.wait_ready(1);
    let check = |code: &str, request: &str| {
        let answer = send(port, request);
        let status = format!("HTTP/1.1 {} ", status_of(code));
        (!answer.starts_with(&status) || header(&answer, "x-shoal-error") != Some(code))
            .then(|| format!("`{code}`: expected {status}with it in X-Shoal-Error, got {answer:?}"))
    };
    let mut problems = Vec::new();
    for (code, how) in PRODUCED {
        if let Produced::Here(request) = how {
            problems.extend(check(code, request));
        }
    }
    for (code, request, start) in UNREACHABLE {
        let answer = send(port, request);
        if !answer.starts_with(start) || header(&answer, "x-shoal-error").is_some() {
            problems.push(format!(
                "`{code}`: expected {start} from the HTTP/1 parser without X-Shoal-Error, got {answer:?}"
            ));
        }
    }
    let scaled = app.run(&["scale", "web=0"]);
    assert_eq!(scaled.code(), Some(0), "{}", scaled.stderr);
    // Scaled away means stopped, not only out of rotation.
    shoal.wait_for_n(1, "saying web.1 ended", |line| {
        line.contains("web.1 was killed by") || line.contains("web.1 exited")
    });
    for (code, how) in PRODUCED {
        if let Produced::WithoutInstances(request) = how {
            problems.extend(check(code, request));
        }
    }
    assert_no_problems("router errors from the real binary", &problems);
}
