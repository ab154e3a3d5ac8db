//! The README's metric list (`| metric | type | labels | meaning |` under `## Metrics`) against
//! what a running formation exposes: every metric family a formation with a concurrency limit
//! and a memory limit serves is listed with its type and labels, and every listed one is served.

use std::collections::{BTreeMap, BTreeSet};

use super::{assert_no_problems, code_spans, readme, section, tables};
use crate::metrics::{promtool_check, scrape_until};
use crate::support::{App, free_port};

/// A metric family as exposed: its type and the label names its samples carry.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// Families of an exposition, by name. Histogram samples (`_bucket`, `_sum`, `_count`) count
/// for their family; the histogram's own `le` label is not one of the family's.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut found: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            found.entry(name.to_owned()).or_default().kind = kind.trim().to_owned();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let series = line.split(' ').next().unwrap_or_default();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (found.get(base)?.kind == "histogram").then_some(base)
            })
            .unwrap_or(name);
        let entry = found.entry(family.to_owned()).or_default();
        for pair in labels.trim_end_matches('}').split(',') {
            if let Some((label, _)) = pair.split_once('=')
                && label != "le"
            {
                entry.labels.insert(label.to_owned());
            }
        }
    }
    found
}

#[test]
fn the_metrics_table_lists_every_metric_served() {
    let text = readme();
    let metrics_section = section(&text, "## Metrics");
    let table = tables(metrics_section)
        .into_iter()
        .find(|t| t.header.first().map(String::as_str) == Some("metric"))
        .expect("README's ## Metrics has a `| metric | type | labels | meaning |` table");
    let mut listed: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for row in &table.rows {
        let labels: BTreeSet<String> = code_spans(&row[2]).iter().map(|l| l.to_string()).collect();
        for name in code_spans(&row[0]) {
            listed.insert(name.to_owned(), (row[1].clone(), labels.clone()));
        }
    }

    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let (port, metrics) = (free_port(), free_port());
    let shoal = app.spawn(&[
        "start",
        "-p",
        &port.to_string(),
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
        "--max-in-flight",
        "2",
        "--memory-limit",
        "1G",
    ]);
    shoal.wait_ready(1);
    let _ = crate::support::http(port, "GET");
    // And an answer the router makes itself (no Host), so that its errors have a sample.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let answer = scrape_until(metrics, "a request and an error counted", |text| {
        text.contains(r#"instance="web.1",class="2xx"} 1"#)
            && text.contains(r#"shoal_router_errors_total{code="missing_host"} 1"#)
    });
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    promtool_check(body);
    let served = families(body);

    let mut problems = Vec::new();
    for (name, family) in &served {
        match listed.get(name) {
            None => problems.push(format!(
                "`{name}` ({}) is served but not listed",
                family.kind
            )),
            Some((kind, labels)) => {
                if *kind != family.kind {
                    problems.push(format!(
                        "`{name}`: README says {kind}, the exposition {}",
                        family.kind
                    ));
                }
                if *labels != family.labels {
                    problems.push(format!(
                        "`{name}`: README lists labels {labels:?}, the exposition has {:?}",
                        family.labels
                    ));
                }
            }
        }
    }
    for name in listed.keys().filter(|name| !served.contains_key(*name)) {
        problems.push(format!("`{name}` is listed but not served"));
    }
    assert_no_problems("README's metric list", &problems);
}
