//! The report for people: the verdict first, then every request that diverged with what
//! differed in each round and the reading, then the noise that was ignored and the notes.

use std::fmt::Write as _;

use super::{Report, RequestReport, Verdict, clip};

/// Noise items listed before "and N more".
const NOISE_SHOWN: usize = 8;

/// The whole report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let (divergent, unstable, total) = report.counts();
    let compared = total - unstable;
    let workers = if report.worker_restarts == 0 {
        String::new()
    } else {
        format!(
            " ({} of workers, {} while a job ran)",
            report.worker_restarts, report.restarts_while_polling
        )
    };
    let setting = format!(
        "{} round{} over {}, {} restart{}{workers}, seed {}, {} copies of the app, {:.1} s",
        report.rounds,
        plural(report.rounds as usize),
        instances(report),
        report.restarts,
        plural(report.restarts),
        report.seed,
        report.copies.how,
        report.elapsed_secs
    );
    match report.verdict {
        Verdict::Stateless => {
            let _ = writeln!(out, "shoal verify: stateless");
            let _ = writeln!(
                out,
                "  all {compared} compared request{} answered as with one long-lived instance ({setting})",
                plural(compared)
            );
        }
        Verdict::Stateful => {
            let _ = writeln!(out, "shoal verify: STATEFUL");
            let _ = writeln!(
                out,
                "  {divergent} of {compared} request{} answered differently than with one long-lived instance ({setting})",
                plural(compared)
            );
        }
    }

    for scenario in &report.scenarios {
        let divergent: Vec<&RequestReport> = scenario
            .requests
            .iter()
            .filter(|r| !r.divergences.is_empty())
            .collect();
        if divergent.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", scenario.file);
        for request in divergent {
            let _ = write!(
                out,
                "  #{} {} {}  (line {}{}): differed in {} of {} rounds",
                request.index,
                request.method,
                request.target,
                request.line,
                request
                    .name
                    .as_ref()
                    .map(|n| format!(", `{n}`"))
                    .unwrap_or_default(),
                request.divergences.len(),
                report.rounds
            );
            let follows: Vec<usize> = request
                .divergences
                .iter()
                .filter_map(|d| d.follows)
                .collect();
            if follows.len() == request.divergences.len() {
                // Every time after an earlier request had diverged: show one round only.
                let _ = writeln!(out, ", each time after #{} had", follows[0]);
                differences(&mut out, &request.divergences[0], "    ");
                continue;
            }
            let _ = writeln!(out);
            let mut causes = Vec::new();
            for divergence in &request.divergences {
                let _ = writeln!(
                    out,
                    "    round {}: {} answered{}",
                    divergence.round,
                    divergence.served_by,
                    if divergence.before.is_empty() {
                        String::new()
                    } else {
                        format!(" (before it: {})", divergence.before.join(", "))
                    }
                );
                differences(&mut out, divergence, "      ");
                if divergence.follows.is_none() && !causes.contains(&divergence.cause) {
                    causes.push(divergence.cause);
                    let _ = writeln!(out, "      reading: {}", divergence.reading);
                }
            }
        }
    }

    let noise: Vec<String> = report
        .scenarios
        .iter()
        .flat_map(|s| {
            s.requests
                .iter()
                .flat_map(|r| r.noise.iter().map(move |n| format!("#{} {n}", r.index)))
        })
        .collect();
    if !noise.is_empty() {
        let _ = writeln!(
            out,
            "\nignored as noise (it differed between the two baseline runs):"
        );
        for item in noise.iter().take(NOISE_SHOWN) {
            let _ = writeln!(out, "  {item}");
        }
        if noise.len() > NOISE_SHOWN {
            let _ = writeln!(
                out,
                "  and {} more (all of them are in the --json report)",
                noise.len() - NOISE_SHOWN
            );
        }
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for note in &report.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    if report.verdict == Verdict::Stateful {
        let _ = writeln!(
            out,
            "\nrepeat these rounds with `--seed {}`; keep state in a backing service (a database, Redis) reached through the environment",
            report.seed
        );
    }
    out
}

/// `3 web instances` or `3 web and 2 worker instances`.
fn instances(report: &Report) -> String {
    let counts: Vec<(&str, usize)> = report
        .formation
        .iter()
        .map(|t| (t.kind.as_str(), t.instances as usize))
        .collect();
    if counts.len() < 2 {
        return format!(
            "{} web instance{}",
            report.web_instances,
            plural(report.web_instances as usize)
        );
    }
    let total: usize = counts.iter().map(|(_, c)| c).sum();
    let listed: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
    let (last, first) = listed.split_last().expect("two or more");
    format!("{} and {last} instance{}", first.join(", "), plural(total))
}

fn differences(out: &mut String, divergence: &super::Divergence, indent: &str) {
    for difference in divergence.differences.iter().take(6) {
        let _ = writeln!(
            out,
            "{indent}{}: {} → {}",
            difference.what,
            clip(&difference.baseline, 100),
            clip(&difference.shuffled, 100)
        );
        for line in difference.diff.iter().take(10) {
            let _ = writeln!(out, "{indent}  {line}");
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
