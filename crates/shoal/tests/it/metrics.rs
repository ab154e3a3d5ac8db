//! `shoal start --metrics ADDR`: the exposition, checked by Prometheus' own `promtool`, and a
//! real Prometheus server scraping a running formation, asked through its HTTP API as an
//! operator would ask it.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{App, free_port, http};

const PATIENCE: Duration = Duration::from_secs(60);

/// `GET path` on `port`; the whole answer, head and body.
pub(crate) fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(PATIENCE));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_string(&mut answer);
    }
    answer
}

/// The value of the sample `series` (its name and labels, exactly) in an exposition.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Scrapes until `ready` holds for the exposition; returns it.
pub(crate) fn scrape_until(port: u16, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = get(port, "/metrics");
        if ready(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}; last scrape:\n{answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[test]
fn metrics_describe_the_router_and_every_instance() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let (port, metrics) = (free_port(), free_port());
    let shoal = app.spawn(&[
        "start",
        "-p",
        &port.to_string(),
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    shoal.wait_ready(1);
    shoal.wait_for(&format!(
        "serving metrics on http://127.0.0.1:{metrics}/metrics"
    ));
    for _ in 0..3 {
        let answer = http(port, "GET");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let web = r#"type="web",instance="web.1""#;
    let answer = scrape_until(metrics, "three 2xx answers counted", |text| {
        sample(
            text,
            &format!(r#"shoal_router_requests_total{{{web},class="2xx"}}"#),
        ) == Some(3.0)
    });
    assert!(
        answer.starts_with("HTTP/1.1 200")
            && answer.contains("content-type: text/plain; version=0.0.4"),
        "{answer}"
    );
    let text = body(&answer);
    assert!(
        text.contains(&format!(
            "shoal_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert_eq!(
        sample(text, r#"shoal_instances{type="web",state="ready"}"#),
        Some(1.0)
    );
    for instance in [web, r#"type="worker",instance="worker.1""#] {
        let memory = sample(
            text,
            &format!("shoal_instance_resident_memory_bytes{{{instance}}}"),
        );
        assert!(memory.is_some_and(|m| m > 0.0), "{instance}: {text}");
        assert!(
            sample(
                text,
                &format!("shoal_instance_cpu_seconds_total{{{instance}}}")
            )
            .is_some(),
            "{instance}: {text}"
        );
        for cause in ["exit", "signal", "chaos", "memory_limit"] {
            assert_eq!(
                sample(
                    text,
                    &format!(r#"shoal_instance_restarts_total{{{instance},cause="{cause}"}}"#)
                ),
                Some(0.0),
                "{text}"
            );
        }
    }
    assert_eq!(
        sample(text, r#"shoal_router_request_duration_seconds_count"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            text,
            r#"shoal_router_request_duration_seconds_bucket{le="+Inf"}"#
        ),
        Some(3.0)
    );
    assert!(get(metrics, "/other").starts_with("HTTP/1.1 404"));
    promtool_check(text);
}

/// `promtool check metrics` on an exposition (not run without `SHOAL_TEST_PROMTOOL`).
pub(crate) fn promtool_check(text: &str) {
    match std::env::var_os("SHOAL_TEST_PROMTOOL") {
        Some(promtool) => {
            let mut check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool runs");
            check
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = check.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!(
            "NOT RUN: promtool check (SHOAL_TEST_PROMTOOL is unset; scripts/test sets it)"
        ),
    }
}

#[test]
fn the_public_port_is_not_a_metrics_port() {
    let app = App::new("web: FAKE serve\n");
    let port = free_port().to_string();
    let out = app.run(&[
        "start",
        "-p",
        &port,
        "--metrics",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("public port"), "{}", out.stderr);
}

/// Ends the Prometheus server when the test ends, whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first value of a Prometheus instant query's result, once there is one.
fn query(port: u16, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let answer = get(port, &format!("/api/v1/query?query={encoded}"));
    let json: serde_json::Value = serde_json::from_str(body(&answer)).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_the_formation() {
    let Some(prometheus) = std::env::var_os("SHOAL_TEST_PROMETHEUS") else {
        eprintln!(
            "NOT RUN: a_real_prometheus_scrapes_the_formation (SHOAL_TEST_PROMETHEUS is unset; scripts/test sets it)"
        );
        return;
    };
    let app = App::new("web: FAKE serve\n");
    let (port, metrics, api) = (free_port(), free_port(), free_port());
    let shoal = app.spawn(&[
        "start",
        "-p",
        &port.to_string(),
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    shoal.wait_ready(1);
    for _ in 0..2 {
        assert!(http(port, "GET").starts_with("HTTP/1.1 200"));
    }
    app.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: shoal\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        ),
    );
    let _server = Server(
        Command::new(prometheus)
            .current_dir(app.path())
            .arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=tsdb")
            .arg(format!("--web.listen-address=127.0.0.1:{api}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let deadline = Instant::now() + PATIENCE;
    let (requests, memory) = loop {
        let requests = query(
            api,
            r#"sum(shoal_router_requests_total{job="shoal",instance="web.1",class="2xx"})"#,
        );
        let memory = query(
            api,
            r#"shoal_instance_resident_memory_bytes{job="shoal",instance="web.1"}"#,
        );
        if let (Some(requests), Some(memory)) = (requests, memory)
            && requests >= 2.0
        {
            break (requests, memory);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had the formation's metrics: requests {requests:?}, memory {memory:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(requests, 2.0);
    assert!(memory > 0.0);
}

#[test]
fn ps_shows_cpu_and_memory_of_each_process_group() {
    // `burn` keeps a child busy: its CPU counts for the instance (the whole process group).
    let app = App::new("web: FAKE serve\nburn: sh -c 'while :; do :; done' & wait\n");
    let port = free_port().to_string();
    let shoal = app.spawn(&["start", "-p", &port]);
    shoal.wait_ready(1);
    let deadline = Instant::now() + PATIENCE;
    let burn = loop {
        let out = app.run(&["ps", "--json"]);
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        let instances: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        let burn = instances
            .iter()
            .find(|i| i["name"] == "burn.1")
            .cloned()
            .unwrap();
        if burn["cpu_seconds"].as_f64().is_some_and(|s| s > 0.2) {
            let web = instances.iter().find(|i| i["name"] == "web.1").unwrap();
            assert!(web["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{web}");
            break burn;
        }
        assert!(Instant::now() < deadline, "burn.1 used no CPU: {burn}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        burn["cpu_percent"].as_f64().is_some_and(|p| p > 0.0),
        "{burn}"
    );
    assert!(
        burn["memory_bytes"].as_u64().is_some_and(|m| m > 0),
        "{burn}"
    );
    let table = app.run(&["ps"]).stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.contains(" CPU ") && header.ends_with("LAST EXIT"),
        "{table}"
    );
    let web = table.lines().find(|l| l.starts_with("web.1")).unwrap();
    assert!(web.contains('%') && web.contains('M'), "{table}");
}

#[test]
fn restarts_are_counted_and_shown_by_cause() {
    let app = App::new("crash: FAKE exit 3\nworker: FAKE sleep\n");
    let metrics = free_port();
    let shoal = app.spawn(&[
        "start",
        "--chaos=kill=300ms",
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    shoal.wait_for("restarting crash.1 in 100 ms (cause: code 3)");
    shoal.wait_for("restarting worker.1 in 100 ms (cause: chaos)");
    let worker = r#"type="worker",instance="worker.1""#;
    let crash = r#"type="crash",instance="crash.1""#;
    let count = |text: &str, instance: &str, cause: &str| {
        sample(
            text,
            &format!(r#"shoal_instance_restarts_total{{{instance},cause="{cause}"}}"#),
        )
        .unwrap_or(0.0)
    };
    let text = scrape_until(metrics, "a restart of each cause", |text| {
        count(text, worker, "chaos") >= 1.0 && count(text, crash, "exit") >= 1.0
    });
    // The worker is only ever killed by chaos mode.
    for cause in ["exit", "signal", "memory_limit", "failed_readiness"] {
        assert_eq!(count(&text, worker, cause), 0.0, "{cause}: {text}");
    }
    let ps = app.run(&["ps", "--json"]);
    let instances: serde_json::Value = serde_json::from_str(&ps.stdout).unwrap();
    let last_exit = |name: &str| {
        instances
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["last_exit"].clone())
    };
    assert_eq!(last_exit("worker.1"), Some("chaos".into()), "{}", ps.stdout);
    // crash.1 exits on its own, unless chaos mode killed it in the moment it ran.
    let crash_exit = last_exit("crash.1").unwrap();
    assert!(
        crash_exit == "code 3" || crash_exit == "chaos",
        "{}",
        ps.stdout
    );
    let table = app.run(&["ps"]).stdout;
    let row = table.lines().find(|l| l.starts_with("worker.1")).unwrap();
    assert!(row.ends_with("chaos"), "{table}");
    shoal.signal(libc::SIGTERM);
    shoal.finish();
}
