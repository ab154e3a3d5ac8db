//! Scenarios from text to the requests a replay sends: the `.http` grammar, HAR files, the
//! checks made before a run, substitution, captures and named requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::check::{Environment, check};
use super::{BodyLine, Until, har, http_file};
use crate::client::{Answer, Outgoing};
use crate::resolve::Replay;

const PORT: u16 = 5000;

fn parse(text: &str) -> super::Scenario {
    http_file::parse(Path::new("s.http"), text).unwrap_or_else(|err| panic!("{err}"))
}

/// The error message for `text`, checks included.
fn error(text: &str) -> String {
    let dotenv = BTreeMap::from([("ADMIN".to_owned(), "root".to_owned())]);
    match http_file::parse(Path::new("s.http"), text) {
        Err(err) => err.to_string(),
        Ok(scenario) => check(
            &scenario,
            Environment {
                dotenv: &dotenv,
                public_port: PORT,
            },
        )
        .map_or_else(
            |err| err.to_string(),
            |()| panic!("{text:?} should be refused"),
        ),
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    Answer {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: Bytes::from(body.to_owned()),
    }
}

#[test]
fn a_rest_client_file_parses() {
    let scenario = parse(
        "@host = {{baseUrl}}\n\
         // a comment\n\
         @token = abc\n\
         \n\
         ### Sign in\n\
         # @name login\n\
         POST {{host}}/login?a=1 HTTP/1.1\n\
         \t&b=2\n\
         Content-Type: application/json\n\
         # a comment among headers\n\
         Authorization: Bearer {{token}}\n\
         \n\
         {\"user\": \"alice\"}\n\
         \n\
         \n\
         ###\n\
         /plain/get\n\
         ###\n\
         // @no-cookie-jar\n\
         # @timeout 5s\n\
         # @until body contains \"done\"\n\
         HEAD /x\n",
    );
    assert_eq!(
        scenario
            .variables
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["host", "token"]
    );
    let [login, plain, head] = scenario.requests.as_slice() else {
        panic!("{:?}", scenario.requests)
    };
    assert_eq!(login.title.as_deref(), Some("Sign in"));
    assert_eq!(login.name.as_deref(), Some("login"));
    assert_eq!(login.method, "POST");
    assert_eq!(login.line, 7);
    assert_eq!(login.target.display(), "{{host}}/login?a=1&b=2");
    assert_eq!(login.headers.len(), 2);
    assert_eq!(login.headers[1].1.display(), "Bearer {{token}}");
    assert_eq!(login.body.len(), 1, "trailing empty lines are not body");
    assert_eq!((plain.method.as_str(), plain.index), ("GET", 2));
    assert_eq!(plain.target.display(), "/plain/get");
    assert!(head.no_cookie_jar);
    assert_eq!(head.timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(head.until, Some(Until::Contains("done".into())));
}

#[test]
fn body_includes_are_relative_to_the_file() {
    let scenario = http_file::parse(
        Path::new("/srv/scenarios/up.http"),
        "POST /up\nContent-Type: text/plain\n\n< ./files/a.bin\n<@ b.json\n",
    )
    .unwrap();
    let paths: Vec<(PathBuf, bool)> = scenario.requests[0]
        .body
        .iter()
        .filter_map(|line| match line {
            BodyLine::Include {
                path, substitute, ..
            } => Some((path.clone(), *substitute)),
            BodyLine::Text(_) => None,
        })
        .collect();
    assert_eq!(
        paths,
        [
            (PathBuf::from("/srv/scenarios/./files/a.bin"), false),
            (PathBuf::from("/srv/scenarios/b.json"), true)
        ]
    );
}

#[test]
fn mistakes_are_named_with_their_line() {
    for (text, expected) in [
        ("", "s.http: no requests found"),
        ("# only a comment\n", "s.http: no requests found"),
        (
            "GET /\nnot a header\n",
            "s.http:2: expected a header `Name: value`",
        ),
        (
            "get /x\n",
            "s.http:1: methods are written in capitals: `GET /x`",
        ),
        (
            "GET\n",
            "s.http:1: expected a request line such as `GET /path`",
        ),
        (
            "POST /a\n\nx=1\nGET /b\n",
            "s.http:4: `GET /b` looks like a request line inside a body; separate requests with a `###` line",
        ),
        (
            "@x\nGET /\n",
            "s.http:1: expected a variable definition `@name = value`",
        ),
        (
            "@x = 1\n@x = 2\nGET /\n",
            "s.http:2: variable `x` is defined twice",
        ),
        ("GET /{{x\n", "s.http:1: `{{` without a closing `}}`"),
        ("GET /{{}}\n", "s.http:1: empty `{{}}`"),
        (
            "GET /{{$nope}}\n",
            "s.http:1: unknown system variable `$nope`",
        ),
        (
            "GET /{{$randomInt 9 1}}\n",
            "s.http:1: `$randomInt 9 1`: expected two whole numbers, the first smaller",
        ),
        (
            "GET /{{a.response.body.//x}}\n",
            "s.http:1: XPath (`//x`) is not supported",
        ),
        (
            "GET /{{a.response.body.$..x}}\n",
            "s.http:1: `$..x` is not a JSON path",
        ),
        ("# @name\nGET /\n", "s.http:1: `@name` needs a request name"),
        (
            "# @name a\nGET /\n###\n# @name a\nGET /\n",
            "s.http:5: a request named `a` comes earlier in the file",
        ),
        (
            "# @capture x\nGET /\n",
            "s.http:1: expected `@capture NAME = body REGEX`",
        ),
        (
            "# @capture x = body (\nGET /\n",
            "s.http:1: `(` is not a valid regex",
        ),
        (
            "# @capture x = json id\nGET /\n",
            "s.http:1: `id` is not a JSON path",
        ),
        (
            "# @until status\nGET /\n",
            "s.http:1: expected `@until status CODE`",
        ),
        (
            "# @until status 200\nPOST /\n",
            "s.http:1: `@until` sends the request again, so it is only for GET and HEAD, not POST",
        ),
        (
            "# @timeout soon\nGET /\n",
            "s.http:1: `soon` is not a duration",
        ),
        (
            "# @prompt password\nGET /\n",
            "s.http:1: `@prompt` needs someone at the keyboard",
        ),
        (
            "# @nmae x\nGET /\n",
            "s.http:1: unknown directive `@nmae`; did you mean `@name`?",
        ),
        (
            "GET /\n###\n# @name late\n",
            "s.http:3: this directive is not followed by a request",
        ),
        (
            "curl http://x\n",
            "s.http:1: curl commands are not supported",
        ),
        (
            "POST /\nContent-Type: text/plain\n\n> {% client.global.set('a', 1) %}\n",
            "s.http:4: response handler scripts and `>>` are not supported",
        ),
        (
            "GET /{{nope}}\n",
            "s.http:1: unknown variable `{{nope}}`; define it with `@nope = value`",
        ),
        (
            "@token = 1\nGET /{{tokne}}\n",
            "s.http:2: unknown variable `{{tokne}}` (did you mean `token`?)",
        ),
        (
            "@a = {{b}}\n@b = {{a}}\nGET /{{a}}\n",
            "s.http:1: variables refer to each other in a circle: a → b → a",
        ),
        (
            "GET /{{login.response.body.$.id}}\n###\n# @name login\nGET /\n",
            "s.http:1: `{{login.response.body.$.id}}` refers to request `login`, which comes later (#2, line 4)",
        ),
        (
            "# @name login\nGET /\n###\nGET /{{lgoin.response.headers.X}}\n",
            "s.http:4: `{{lgoin.response.headers.X}}` refers to a request named `lgoin`, but no earlier request has `# @name lgoin` (did you mean `login`?)",
        ),
        (
            "GET /{{v}}\n###\n# @capture v = json $.v\nGET /\n",
            "s.http:1: `{{v}}` is captured only later, by request #2 (line 3)",
        ),
        (
            "@v = 1\n# @capture v = json $.v\nGET /\n",
            "s.http:2: `v` is already a file variable (line 1)",
        ),
        (
            "GET /{{$dotenv NOPE}}\n",
            "s.http:1: `{{$dotenv NOPE}}`: the formation's .env files do not set `NOPE`",
        ),
        (
            "GET /{{$processEnv SHOAL_TEST_SURELY_UNSET}}\n",
            "s.http:1: `{{$processEnv SHOAL_TEST_SURELY_UNSET}}`: the environment variable `SHOAL_TEST_SURELY_UNSET` is not set",
        ),
        (
            "GET https://127.0.0.1:5000/x\n",
            "s.http:1: `https://127.0.0.1:5000`: verify talks to the formation over plain HTTP",
        ),
        (
            "GET http://example.com/x\n",
            "s.http:1: `http://example.com` points at another host than the app under test (http://127.0.0.1:5000)",
        ),
        (
            "GET http://localhost:3000\n",
            "s.http:1: `http://localhost:3000` points at another host",
        ),
        (
            "POST /\nContent-Type: text/plain\n\n< ./surely-missing-file.txt\n",
            "s.http:4: cannot read the included file `./surely-missing-file.txt`",
        ),
    ] {
        let message = error(text);
        assert!(
            message.contains(expected),
            "for {text:?}:\n  got      {message}\n  expected {expected}"
        );
    }
    // What is fine passes the checks.
    let dotenv = BTreeMap::from([("ADMIN".to_owned(), "root".to_owned())]);
    let fine = parse("GET http://localhost:5000/a?u={{$dotenv ADMIN}}\n###\nGET {{baseUrl}}/b\n");
    assert!(
        check(
            &fine,
            Environment {
                dotenv: &dotenv,
                public_port: PORT
            }
        )
        .is_ok()
    );
}

fn replay(scenario: &super::Scenario) -> Replay<'_> {
    static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    Replay::new(scenario, PORT, EMPTY.get_or_init(BTreeMap::new))
}

#[test]
fn variables_are_substituted_and_fixed_for_one_replay() {
    let scenario = parse(
        "@user = u-{{$guid}}\n\
         @base = {{baseUrl}}/api\n\
         GET {{base}}/users/{{%user}}?q=a b\n\
         X-User: {{user}}\n\
         ###\n\
         GET /again/{{user}}\n",
    );
    let mut first = replay(&scenario);
    let a = first.build(&scenario.requests[0]).unwrap();
    let b = first.build(&scenario.requests[1]).unwrap();
    let user = &a.headers[0].1;
    assert!(user.starts_with("u-") && user.len() == 38, "{user}");
    assert_eq!(a.path, format!("/api/users/{user}?q=a%20b"));
    assert_eq!(b.path, format!("/again/{user}"));
    assert_eq!(first.generated(), [user.trim_start_matches("u-")]);
    let mut second = replay(&scenario);
    let c = second.build(&scenario.requests[0]).unwrap();
    assert_ne!(c.headers[0].1, *user, "a new replay makes up a new user");
}

#[test]
fn includes_that_are_not_regular_files_are_refused_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let scenario_path = dir.path().join("s.http");
    let link = dir.path().join("key.txt");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    // `< /dev/zero` was read to the end by the checks, which never came: the test would
    // have filled memory; now the kind is seen before anything is read.
    for (include, expected) in [
        (
            "/dev/zero".to_owned(),
            "the included file `/dev/zero` is a character device; expected a regular file"
                .to_owned(),
        ),
        (
            "./key.txt".to_owned(),
            format!(
                "the included file `{}` is a character device; expected a regular file",
                dir.path().join("./key.txt").display()
            ),
        ),
        (
            ".".to_owned(),
            format!(
                "the included file `{}` is a directory; expected a regular file",
                dir.path().join(".").display()
            ),
        ),
    ] {
        let text = format!("POST /up\nContent-Type: text/plain\n\nfirst line\n< {include}\n");
        let scenario = http_file::parse(&scenario_path, &text).unwrap();
        let dotenv = BTreeMap::new();
        let err = check(
            &scenario,
            Environment {
                dotenv: &dotenv,
                public_port: PORT,
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:5: {expected}", scenario_path.display())
        );
        // A replay reads the file again (it may have changed since the checks): the same
        // refusal, at the same line.
        let err = replay(&scenario).build(&scenario.requests[0]).unwrap_err();
        assert_eq!((err.line, err.message.as_str()), (5, expected.as_str()));
    }
}

#[test]
fn form_bodies_encode_substituted_values_and_multipart_bodies_use_crlf() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file.bin"), b"\x00\x01raw").unwrap();
    std::fs::write(dir.path().join("tpl.txt"), "token={{token}}").unwrap();
    let scenario = http_file::parse(
        &dir.path().join("s.http"),
        "@token = a+b/c=\n\
         POST /form\n\
         Content-Type: application/x-www-form-urlencoded\n\
         \n\
         user=al ice\n\
         &token={{token}}\n\
         ###\n\
         POST /multi\n\
         Content-Type: multipart/form-data; boundary=B\n\
         \n\
         --B\n\
         Content-Disposition: form-data; name=\"f\"; filename=\"file.bin\"\n\
         \n\
         < ./file.bin\n\
         --B\n\
         Content-Disposition: form-data; name=\"t\"\n\
         \n\
         <@ ./tpl.txt\n\
         --B--\n\
         ###\n\
         POST /json\n\
         Content-Type: application/json\n\
         \n\
         {\"token\": \"{{token}}\",\n \"n\": 1}\n",
    )
    .unwrap();
    let mut client = replay(&scenario);
    let form = client.build(&scenario.requests[0]).unwrap();
    assert_eq!(form.body, b"user=al ice&token=a%2Bb%2Fc%3D");
    let multi = client.build(&scenario.requests[1]).unwrap();
    assert_eq!(
        multi.body,
        b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"file.bin\"\r\n\r\n\x00\x01raw\r\n--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\ntoken=a+b/c=\r\n--B--"
    );
    let json = client.build(&scenario.requests[2]).unwrap();
    assert_eq!(json.body, b"{\"token\": \"a+b/c=\",\n \"n\": 1}");
}

#[test]
fn captures_named_requests_and_cookies_carry_values_forward() {
    let scenario = parse(
        "# @name page\n\
         # @capture csrf = body csrf\\W+value\\W+([\\w&;]+)\n\
         # @capture next = header Location /items/(\\d+)\n\
         # @capture id = json $.item.id\n\
         GET /page\n\
         ###\n\
         POST /items/{{next}}?csrf={{csrf}}&id={{id}}\n\
         X-Loc: {{page.response.headers.location}}\n\
         X-Body: {{page.response.body.$.item.name}}\n\
         X-Method: {{page.request.body.*}}none\n\
         ###\n\
         # @no-cookie-jar\n\
         GET /nocookies\n",
    );
    let mut client = replay(&scenario);
    let first = client.build(&scenario.requests[0]).unwrap();
    assert!(first.headers.is_empty());
    let page = answer(
        200,
        &[
            ("content-type", "application/json"),
            ("location", "http://127.0.0.1:5000/items/42"),
            ("set-cookie", "sid=s1; Path=/; HttpOnly"),
        ],
        r#"{"item": {"id": 7, "name": "pear"}, "html": "<input name=\"csrf\" value=\"t&amp;k\">"}"#,
    );
    assert_eq!(
        client.record(&scenario.requests[0], &first, Some(&page)),
        vec![]
    );
    let second = client.build(&scenario.requests[1]).unwrap();
    // The regex sees the raw body (JSON, so no HTML unescaping).
    assert_eq!(second.path, "/items/42?csrf=t&amp;k&id=7");
    assert!(second.path.ends_with("&id=7"), "{}", second.path);
    let header = |name: &str| {
        second
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("X-Loc"), Some("http://127.0.0.1:5000/items/42"));
    assert_eq!(header("X-Body"), Some("pear"));
    assert_eq!(header("X-Method"), Some("none"));
    assert_eq!(header("Cookie"), Some("sid=s1"));
    let third = client.build(&scenario.requests[2]).unwrap();
    assert!(third.headers.is_empty(), "{:?}", third.headers);
}

#[test]
fn html_captures_are_unescaped_and_failures_name_their_line() {
    let scenario = parse(
        "# @capture csrf = body name=\"csrf\" value=\"([^\"]+)\"\n\
         # @capture id = json $.id\n\
         GET /form\n\
         ###\n\
         GET /x?t={{%csrf}}\n",
    );
    let mut client = replay(&scenario);
    let request = client.build(&scenario.requests[0]).unwrap();
    let page = answer(
        200,
        &[("content-type", "text/html")],
        r#"<input name="csrf" value="a&amp;b&#43;c">"#,
    );
    let failures = client.record(&scenario.requests[0], &request, Some(&page));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].line, 2);
    assert_eq!(
        failures[0].message,
        "`@capture id`: the body (status 200) is not JSON"
    );
    let next = client.build(&scenario.requests[1]).unwrap();
    assert_eq!(next.path, "/x?t=a%26b%2Bc");
}

#[test]
fn a_value_from_a_missing_answer_is_an_error_at_its_line() {
    let scenario = parse("# @name a\nGET /\n###\nGET /{{a.response.body.$.id}}\n");
    let mut client = replay(&scenario);
    let first = client.build(&scenario.requests[0]).unwrap();
    client.record(&scenario.requests[0], &first, Some(&answer(200, &[], "{}")));
    let err = client.build(&scenario.requests[1]).unwrap_err();
    assert_eq!(err.line, 4);
    assert_eq!(
        err.message,
        "`{{a.response.body.$.id}}`: nothing at `$.id` in the body"
    );
}

#[test]
fn har_files_replay_the_app_host_only() {
    let har_text = r#"{"log": {"entries": [
        {"request": {"method": "post", "url": "https://Shop.test/cart?x=1",
                     "headers": [{"name": "Cookie", "value": "s=1"}, {"name": ":authority", "value": "shop.test"},
                                 {"name": "Origin", "value": "https://shop.test"}, {"name": "X-Kept", "value": "{{not a template}}"}],
                     "postData": {"mimeType": "application/json", "text": "{\"a\": \"{{b}}\"}"}},
         "response": {"status": 200}},
        {"request": {"method": "GET", "url": "https://cdn.test/x.js", "headers": []}, "response": {"status": 200}},
        {"request": {"method": "GET", "url": "https://shop.test/gone", "headers": []}, "response": {"status": 0}},
        {"request": {"method": "GET", "url": "https://shop.test/", "headers": []}}
    ]}}"#;
    let scenario = har::parse(Path::new("r.har"), har_text).unwrap();
    assert_eq!(scenario.requests.len(), 2);
    assert_eq!(
        scenario.notes,
        [
            "left out the requests to other hosts than `https://shop.test`: https://cdn.test",
            "left out 1 request(s) that got no answer when they were recorded"
        ]
    );
    let mut client = replay(&scenario);
    let Outgoing {
        method,
        path,
        headers,
        body,
    } = client.build(&scenario.requests[0]).unwrap();
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/cart?x=1"));
    assert_eq!(
        headers,
        [
            ("Origin".to_owned(), "http://127.0.0.1:5000".to_owned()),
            ("X-Kept".to_owned(), "{{not a template}}".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ]
    );
    assert_eq!(body, br#"{"a": "{{b}}"}"#);
    let err = har::parse(Path::new("r.har"), "{\"log\": 3}").unwrap_err();
    assert!(
        err.to_string().starts_with("r.har:1: not a HAR file"),
        "{err}"
    );
}

/// Runs `work` on another thread, so that a run-away fails the test instead of hanging it;
/// the deadline is generous, each of these takes milliseconds.
fn within_deadline<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("did not finish within 60 s")
}

fn check_alone(scenario: &super::Scenario) -> Result<(), crate::ScenarioError> {
    let dotenv = BTreeMap::new();
    check(
        scenario,
        Environment {
            dotenv: &dotenv,
            public_port: PORT,
        },
    )
}

#[test]
fn variables_that_double_at_each_line_are_checked_once_and_bounded_when_built() {
    // Found while writing the property tests: each variable refers to the one before twice,
    // so walking
    // every reference made 2^60 visits in the checks (they never ended), and substituting
    // `{{v60}}` asked for 2^61 bytes.
    let mut text = "@v0 = ab\n".to_owned();
    for i in 1..=60 {
        text.push_str(&format!("@v{i} = {{{{v{}}}}}{{{{v{}}}}}\n", i - 1, i - 1));
    }
    text.push_str("GET /x\nX-Big: {{v60}}\n");
    let scenario = parse(&text);
    let checked = within_deadline({
        let scenario = scenario.clone();
        move || check_alone(&scenario).map_err(|err| err.to_string())
    });
    assert_eq!(checked, Ok(()));
    let err = replay(&scenario)
        .with_limit(1024)
        .build(&scenario.requests[0])
        .unwrap_err();
    assert_eq!(
        (err.line, err.message.as_str()),
        (
            63,
            "with its variables substituted, this grows past 1024 bytes; expected at most 1024 bytes"
        )
    );
}

#[test]
fn variables_nested_too_deep_are_refused_at_their_line() {
    // A chain in file order: `{{v64}}` is the first 65 deep. It used to pass the checks and
    // fail in the replay with "has no value", which pointed at a capture.
    let mut text = "@v0 = x\n".to_owned();
    for i in 1..70 {
        text.push_str(&format!("@v{i} = {{{{v{}}}}}\n", i - 1));
    }
    text.push_str("GET /{{v69}}\n");
    assert_eq!(
        error(&text),
        "s.http:65: `{{v64}}` nests variables in variables more than 64 deep; expected at most 64 levels"
    );
    // A chain against file order, long enough that following it to its end overflowed the
    // stack: refused at the first variable, 64 levels down.
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&format!("@v{i} = {{{{v{}}}}}\n", i + 1));
    }
    text.push_str("@v100000 = end\nGET /{{v0}}\n");
    let message = within_deadline(move || error(&text));
    assert_eq!(
        message,
        "s.http:1: `{{v0}}` nests variables in variables more than 64 deep; expected at most 64 levels"
    );
}
