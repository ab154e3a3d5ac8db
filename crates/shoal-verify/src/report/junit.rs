//! The report as JUnit XML, the format CI systems show test results in: one test suite per
//! scenario file, one test case per request. A request that diverged in any round fails (the
//! message is the first reading; the text lists every round); a request that was not compared
//! is skipped.

use std::fmt::Write as _;

use super::{Report, clip};

/// The report as a JUnit XML document.
pub fn render(report: &Report) -> String {
    let (divergent, unstable, total) = report.counts();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"shoal verify\" tests=\"{total}\" failures=\"{divergent}\" errors=\"0\" skipped=\"{unstable}\" time=\"{:.3}\">",
        report.elapsed_secs
    );
    for scenario in &report.scenarios {
        let failures = scenario
            .requests
            .iter()
            .filter(|r| !r.divergences.is_empty())
            .count();
        let skipped = scenario
            .requests
            .iter()
            .filter(|r| r.unstable.is_some())
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">",
            escape(&scenario.file),
            scenario.requests.len(),
            report.elapsed_secs
        );
        let _ = writeln!(out, "    <properties>");
        for (name, value) in [
            ("seed", report.seed.to_string()),
            ("rounds", report.rounds.to_string()),
            ("web_instances", report.web_instances.to_string()),
            ("restarts", report.restarts.to_string()),
        ] {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                escape(&value)
            );
        }
        let _ = writeln!(out, "    </properties>");
        for request in &scenario.requests {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"shoal verify.{}\" file=\"{}\" line=\"{}\"",
                escape(&format!(
                    "#{} {} {}",
                    request.index, request.method, request.target
                )),
                escape(&scenario.file),
                escape(&scenario.file),
                request.line
            );
            if let Some(why) = &request.unstable {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(why)
                );
            } else if let Some(first) = request.divergences.first() {
                let mut details = String::new();
                for divergence in &request.divergences {
                    let _ = writeln!(
                        details,
                        "round {}: {} answered {}",
                        divergence.round, divergence.served_by, divergence.path
                    );
                    for difference in &divergence.differences {
                        let _ = writeln!(
                            details,
                            "  {}: {} -> {}",
                            difference.what,
                            clip(&difference.baseline, 200),
                            clip(&difference.shuffled, 200)
                        );
                        for line in &difference.diff {
                            let _ = writeln!(details, "    {line}");
                        }
                    }
                    let _ = writeln!(details, "  reading: {}", divergence.reading);
                }
                let _ = writeln!(
                    out,
                    ">\n      <failure type=\"stateful\" message=\"{}\">{}</failure>\n    </testcase>",
                    escape(&first.reading),
                    escape(&details)
                );
            } else {
                let _ = writeln!(out, "/>");
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes text for XML attributes and content; characters XML 1.0 cannot hold are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_xml_cannot_hold() {
        assert_eq!(
            escape("a<b & \"c\" 'd'\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;\n"
        );
    }
}
