//! `shoal verify`: runs shoal-verify, draws its progress on stderr, prints the report on
//! stdout, writes the `--json` and `--junit` files, and turns the verdict into the exit code:
//! 0 stateless, 1 stateful, 2 when no verdict could be reached (bad flags, a bad scenario, an
//! app that does not start or answer) — never a verdict it does not have.

use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use shoal_supervisor::Watchdog;
use shoal_verify::isolate;
use shoal_verify::report::{junit, text};
use shoal_verify::{Event, Phase, Progress, Verdict, VerifyError};

use super::{plan_options, runtime};
use crate::cli::VerifyArgs;
use crate::report::{self, UsageError};

/// The app is stateless.
const STATELESS: i32 = 0;
/// The app is stateful.
const STATEFUL: i32 = 1;

pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<i32> {
    // First, while shoal has one thread: the kernel moves a thread alone into a namespace.
    // The private copies are copy-on-write there, when the kernel allows it.
    let namespace = isolate::private_mounts();
    let seed = args.seed.unwrap_or_else(|| {
        // A short random seed, easy to type back in with `--seed`.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish() % 1_000_000
    });
    for path in args.json.iter().chain(&args.junit) {
        check_writable(path)?;
    }
    let watchdog = Watchdog::start(Path::new("/proc/self/exe"), &["__watchdog"])
        .context("cannot start shoal's watchdog process")?;
    let options = shoal_verify::Options {
        plan: plan_options(&args.app, args.formation.clone()),
        scenarios: args.scenarios.clone(),
        rounds: args.rounds,
        seed,
        grace: Duration::from_secs_f64(args.timeout),
        boot_timeout: Duration::from_secs_f64(args.boot_timeout),
        health_path: args.health_path.clone(),
        watchdog: Some(Arc::new(watchdog)),
        log_file: args.log.clone(),
        namespace,
    };
    let progress = Stderr::new();
    let rt = runtime()?;
    let result = rt.block_on(async {
        tokio::select! {
            result = shoal_verify::verify(options, &progress) => result,
            _ = tokio::signal::ctrl_c() => Err(VerifyError::Interrupted),
        }
    });
    progress.clear();
    // Dropping the run stopped its formation; nothing of it may keep the runtime waiting.
    rt.shutdown_timeout(Duration::from_secs(1));

    let report = match result {
        Ok(report) => report,
        Err(VerifyError::Interrupted) => {
            eprintln!("shoal verify: interrupted; the formation was stopped and no verdict given");
            return Ok(crate::exit::for_signal(libc::SIGINT));
        }
        Err(err) => {
            let output = match &err {
                VerifyError::App { output, .. } => output.clone(),
                _ => Vec::new(),
            };
            let code = report::error(&UsageError(err.into()).into());
            if !output.is_empty() {
                eprintln!("  the instances' last output:");
                for line in output {
                    eprintln!("    {line}");
                }
            }
            eprintln!("  no verdict: shoal verify could not compare the app's answers");
            return Ok(code);
        }
    };

    let json = serde_json::to_string_pretty(&report).context("cannot serialise the report")?;
    match &args.json {
        Some(path) if path.as_os_str() == "-" => println!("{json}"),
        other => {
            print!("{}", text::render(&report));
            if let Some(path) = other {
                write(path, &format!("{json}\n"))?;
            }
        }
    }
    if let Some(path) = &args.junit {
        write(path, &junit::render(&report))?;
    }
    Ok(match report.verdict {
        Verdict::Stateless => STATELESS,
        Verdict::Stateful => STATEFUL,
    })
}

/// Fails early, before minutes of replaying, when a report file cannot be written.
fn check_writable(path: &Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        return Ok(());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(UsageError(anyhow::anyhow!(
            "cannot write the report to `{}`: the directory `{}` does not exist",
            path.display(),
            dir.display()
        ))
        .into());
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the report to `{}`", path.display()))
        .map_err(|err| UsageError(err).into())
}

/// Progress on stderr: one line that updates in place on a terminal, a line per phase
/// otherwise (logs, CI).
struct Stderr {
    terminal: bool,
    line_shown: Mutex<bool>,
}

impl Stderr {
    fn new() -> Stderr {
        Stderr {
            terminal: std::io::stderr().is_terminal(),
            line_shown: Mutex::new(false),
        }
    }

    fn status(&self, text: &str) {
        if self.terminal {
            let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(std::io::stderr(), "\r\x1b[2K{text}");
            *shown = true;
        }
    }

    fn line(&self, text: &str) {
        let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if *shown {
            let _ = write!(err, "\r\x1b[2K");
            *shown = false;
        }
        let _ = writeln!(err, "{text}");
    }

    fn clear(&self) {
        let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
        if *shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            *shown = false;
        }
    }
}

impl Progress for Stderr {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Phase { phase, requests } => {
                if self.terminal {
                    self.status(&format!("verify: {phase}: 0/{requests} requests"));
                } else {
                    self.line(&format!("verify: {phase}: replaying {requests} requests"));
                }
            }
            Event::Request {
                phase,
                done,
                total,
                restarts,
            } => self.status(&format!(
                "verify: {phase}: {done}/{total} requests, {restarts} instance restart{}",
                if restarts == 1 { "" } else { "s" }
            )),
            Event::Restart {
                phase,
                instance,
                signal,
            } => self.status(&format!(
                "verify: {phase}: restarting {instance} ({})",
                signal.name()
            )),
            Event::PhaseDone {
                phase,
                seconds,
                divergent,
                restarts,
            } => {
                let outcome = if let Phase::Baseline { .. } = phase {
                    String::new()
                } else if divergent == 0 {
                    format!(", {restarts} restart(s), every answer as in the baseline")
                } else {
                    format!(
                        ", {restarts} restart(s), {divergent} answer(s) differed from the baseline"
                    )
                };
                self.line(&format!("verify: {phase} done in {seconds:.1} s{outcome}"));
            }
        }
    }
}
