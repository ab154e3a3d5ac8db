//! Chaos mode (`shoal start --chaos[=kill=10s,wipe]`): kills a random instance with SIGKILL at
//! random intervals around the given period, as production does to processes, so that
//! developers see during ordinary work whether their app survives it. Each kill is logged as a
//! `chaos` line. The killed instance restarts at once with an empty scratch directory (shoal
//! always empties scratch when an instance restarts, so `wipe` is accepted for clarity and
//! always in effect). The last ready `web` instance is never killed, so the router always has
//! somewhere to send requests.

use std::time::Duration;

use shoal_procfile::plan::WEB;
use shoal_supervisor::{Handle, Log, State};

/// What chaos mode does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChaosSpec {
    /// The average time between two kills.
    pub period: Duration,
}

impl Default for ChaosSpec {
    fn default() -> Self {
        ChaosSpec {
            period: Duration::from_secs(10),
        }
    }
}

impl ChaosSpec {
    /// Parses `kill=10s,wipe` (an empty spec is the default, `kill=10s`).
    pub fn parse(text: &str) -> Result<ChaosSpec, String> {
        let mut spec = ChaosSpec::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some(("kill", period)) => spec.period = parse_duration(period)?,
                None if item == "wipe" => {}
                _ => {
                    return Err(format!(
                        "`{item}` is not a chaos setting; expected `kill=DURATION` (e.g. `kill=10s`) or `wipe`"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// `500ms`, `10s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let error = || format!("`{text}` is not a duration; expected e.g. `500ms`, `10s` or `2m`");
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.parse().map_err(|_| error())?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(error()),
    };
    if !(0.01..=86_400.0).contains(&seconds) {
        return Err(error());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Kills instances until the task is dropped.
pub async fn run(handle: Handle, spec: ChaosSpec, log: Log) {
    let source = log.named("chaos");
    log.line_now(
        &source,
        format!(
            "chaos mode: killing a random instance about every {:.1} s",
            spec.period.as_secs_f64()
        ),
    );
    loop {
        let wait = spec.period.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(wait).await;
        let snapshot = handle.snapshot();
        let up = |kind: &str| {
            snapshot
                .instances
                .iter()
                .filter(|i| i.name.kind == kind && matches!(i.state, State::Ready | State::Running))
                .count()
        };
        let candidates: Vec<_> = snapshot
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Ready | State::Running))
            .filter(|i| i.name.kind != WEB || i.state != State::Ready || up(WEB) > 1)
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let victim = candidates[fastrand::usize(..candidates.len())].name.clone();
        match handle.chaos_kill(&victim).await {
            Ok(pid) => log.line_now(&source, format!("killed {victim} (pid {pid}) with SIGKILL")),
            Err(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_documented() {
        assert_eq!(
            ChaosSpec::parse("").unwrap().period,
            Duration::from_secs(10)
        );
        assert_eq!(
            ChaosSpec::parse("kill=500ms,wipe").unwrap().period,
            Duration::from_millis(500)
        );
        assert_eq!(
            ChaosSpec::parse("kill=2m").unwrap().period,
            Duration::from_secs(120)
        );
        assert!(ChaosSpec::parse("kill=soon").is_err());
        assert_eq!(
            ChaosSpec::parse("explode").unwrap_err(),
            "`explode` is not a chaos setting; expected `kill=DURATION` (e.g. `kill=10s`) or `wipe`"
        );
    }
}
