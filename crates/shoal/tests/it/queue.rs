//! `--max-in-flight` and `WEB_CONCURRENCY`: where the limit comes from, and that web instances
//! are told it.

use crate::support::{App, free_port};

#[test]
fn max_in_flight_reaches_web_instances_as_web_concurrency() {
    let app = App::new("web: FAKE env WEB_CONCURRENCY\nworker: FAKE env WEB_CONCURRENCY\n");
    app.write(".env", "WEB_CONCURRENCY=7\n");
    let port = free_port().to_string();
    let shoal = app.spawn(&["start", "-p", &port, "--max-in-flight", "2"]);
    shoal.wait_for("web.1    | WEB_CONCURRENCY=");
    shoal.wait_for("worker.1 | WEB_CONCURRENCY=");
    let out = shoal.stdout();
    // The flag wins over .env for web; other types keep what .env says.
    assert!(out.contains("web.1    | WEB_CONCURRENCY=2"), "{out}");
    assert!(out.contains("worker.1 | WEB_CONCURRENCY=7"), "{out}");
}

#[test]
fn a_web_concurrency_that_is_not_a_number_is_a_usage_error() {
    let app = App::new("web: FAKE serve\n");
    app.write(".env", "# sizes\nWEB_CONCURRENCY=lots\n");
    let out = app.run(&["start", "-p", &free_port().to_string()]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("`WEB_CONCURRENCY=lots`") && out.stderr.contains(".env:2"),
        "{}",
        out.stderr
    );
}

#[test]
fn ps_shows_the_limit_and_the_queue() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let port = free_port().to_string();
    let shoal = app.spawn(&["start", "-p", &port, "--max-in-flight", "2"]);
    shoal.wait_ready(1);
    shoal.wait_for("worker.1 | up");
    let out = app.run(&["ps"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let web = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web.1"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(web.contains(" 0/2 "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("queue: 0 waiting for a free slot (at most 2 in flight per web instance)"),
        "{}",
        out.stdout
    );
    let out = app.run(&["ps", "--json"]);
    let instances: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let web = instances.iter().find(|i| i["name"] == "web.1").unwrap();
    assert_eq!(
        (web["max_in_flight"].as_u64(), web["queued"].as_u64()),
        (Some(2), Some(0))
    );
    let worker = instances.iter().find(|i| i["name"] == "worker.1").unwrap();
    assert!(worker.get("max_in_flight").is_none(), "{worker}");
}
