//! The verify run: two baseline runs, the noise they show, the shuffled rounds, and the
//! comparison.
//!
//! 1. **Baseline.** The formation with one `web` instance (and the other process types) is
//!    started and the scenarios are replayed by a fresh client; then it is stopped, started
//!    afresh, and replayed again by another fresh client. Each run thus sees one long-lived
//!    instance starting from the app as built; what differs between the two runs changes by
//!    itself (timestamps, random ids, CSRF tokens) and is learned as noise.
//! 2. **Shuffled rounds.** The formation with N `web` instances is started for each round, and
//!    the scenarios are replayed following the round's seeded [`schedule`]: each request to
//!    another instance than the one before, instances restarted in between (SIGTERM or
//!    SIGKILL). verify sends each request straight to the chosen instance's port, with the
//!    headers shoal's router would add (see [`crate::client`]).
//! 3. Every shuffled answer is compared with the first baseline answer, beyond the noise.
//!
//! Every instance of every run runs in a private copy of the app directory, fresh at each
//! start ([`crate::copies`]); every wait is for the supervisor's snapshots, never a sleep.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_procfile::formation::Spec;
use shoal_procfile::plan::WEB;
use shoal_procfile::{InstanceName, Plan, PlanOptions};
use shoal_supervisor::{RuntimeDir, Watchdog};

use crate::client::{self, Answer, Outgoing, Route};
use crate::compare::{Difference, Noise};
use crate::copies::{LocalWrite, PrivateCopies};
use crate::error::{ScenarioError, VerifyError};
use crate::formation::{Formation, Setup, Tail};
use crate::observe::{Normalizer, Observation};
use crate::reading::{self, Facts};
use crate::report::{Divergence, JSON_VERSION, Report, RequestReport, ScenarioReport, Verdict};
use crate::resolve::{Replay, ResolveError};
use crate::scenario::check::{Environment, check};
use crate::scenario::{self, RequestSpec, Scenario, Until};
use crate::schedule::{self, Signal, Step};

/// `web` instances in the shuffled rounds when the formation spec does not say.
pub const DEFAULT_WEB: u32 = 3;
/// How long a request may take, unless its `# @timeout` says otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two tries of a request with `# @until`.
const UNTIL_INTERVAL: Duration = Duration::from_millis(200);

/// What to verify, and how.
#[derive(Clone)]
pub struct Options {
    /// The Procfile, `.env` files and formation (`-m`): the shuffled rounds' formation; the
    /// baseline runs the same with one `web` instance.
    pub plan: PlanOptions,
    pub scenarios: Vec<PathBuf>,
    pub rounds: u32,
    pub seed: u64,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// How long an instance may take to become ready.
    pub boot_timeout: Duration,
    pub health_path: Option<String>,
    pub watchdog: Option<Arc<Watchdog>>,
    /// Where to write the instances' output, if anywhere.
    pub log_file: Option<PathBuf>,
}

/// What a run reports while it goes on.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A run begins: `baseline 1/2`, `round 2/3`…
    Phase { phase: &'a str, requests: usize },
    /// `done` of `total` requests of the phase are answered.
    Request {
        phase: &'a str,
        done: usize,
        total: usize,
        restarts: usize,
    },
    /// An instance is being restarted.
    Restart {
        phase: &'a str,
        instance: &'a str,
        signal: Signal,
    },
    /// A run ended; `divergent` requests answered differently (shuffled rounds).
    PhaseDone {
        phase: &'a str,
        seconds: f64,
        divergent: usize,
        restarts: usize,
    },
}

/// Receives a run's progress (the CLI draws it on stderr).
pub trait Progress {
    fn event(&self, event: Event<'_>);
}

/// Loads and checks everything, runs the baseline and the shuffled rounds, and returns what
/// was found.
pub async fn verify(options: Options, progress: &dyn Progress) -> Result<Report, VerifyError> {
    let started = Instant::now();
    let base_plan = Plan::load(&options.plan)?;
    let web_count = shuffled_web_count(&options.plan, &base_plan)?;
    let public_port = base_plan.port;
    let dotenv: BTreeMap<String, String> = base_plan
        .env
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    let mut scenarios = Vec::new();
    for path in &options.scenarios {
        let loaded = scenario::load(path)?;
        check(
            &loaded,
            Environment {
                dotenv: &dotenv,
                public_port,
            },
        )?;
        scenarios.push(loaded);
    }

    let work = tempfile::Builder::new()
        .prefix("shoal-verify-")
        .tempdir()
        .map_err(|source| VerifyError::Io {
            what: "cannot create a temporary directory for the private copies".into(),
            source,
        })?;
    let result = run_in(
        &options,
        progress,
        &base_plan,
        web_count,
        &scenarios,
        dotenv,
        work.path(),
    )
    .await;
    let _ = shoal_supervisor::scratch::remove_all(work.path());
    let (mut report, notes) = result?;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.notes.extend(notes);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_in(
    options: &Options,
    progress: &dyn Progress,
    base_plan: &Plan,
    web_count: u32,
    scenarios: &[Scenario],
    dotenv: BTreeMap<String, String>,
    work: &std::path::Path,
) -> Result<(Report, Vec<String>), VerifyError> {
    let io = |what: String| move |source| VerifyError::Io { what, source };
    let runtime = RuntimeDir::under(work, &base_plan.procfile);
    runtime.create().map_err(|err| {
        io("cannot prepare the runtime directory".into())(std::io::Error::other(err))
    })?;
    let copies_root = work.join("copies");
    std::fs::create_dir(&copies_root)
        .map_err(io(format!("cannot create `{}`", copies_root.display())))?;
    let copies = Arc::new(PrivateCopies::new(&base_plan.app_dir, &copies_root));
    let tail = Tail::new(options.log_file.clone()).map_err(io(format!(
        "cannot write the log file `{}`",
        options
            .log_file
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display()
    )))?;

    let counts = |web: u32| -> Vec<(String, u32)> {
        base_plan
            .types
            .iter()
            .map(|t| (t.name.clone(), if t.name == WEB { web } else { t.count }))
            .collect()
    };
    let port = free_block(&counts(web_count))?;
    let baseline_plan = Arc::new(plan_with(&options.plan, port, &counts(1))?);
    let shuffled_plan = Arc::new(plan_with(&options.plan, port, &counts(web_count))?);
    let setup = Setup {
        runtime,
        copies: copies.clone(),
        watchdog: options.watchdog.clone(),
        grace: options.grace,
        boot_timeout: options.boot_timeout,
        health_path: options.health_path.clone(),
        tail,
    };
    let mut runner = Runner {
        scenarios,
        public_port: base_plan.port,
        dotenv,
        setup,
        progress,
    };

    let mut baselines = Vec::new();
    let mut baseline_writes = Vec::new();
    for run in 1..=2 {
        let phase = format!("baseline {run}/2");
        copies.begin_run(&format!("baseline {run}"));
        let began = Instant::now();
        let mut formation = Formation::start(baseline_plan.clone(), &runner.setup).await?;
        let result = runner.replay(&mut formation, None, &phase, Some(run)).await;
        formation.stop().await;
        let writes = copies.end_run();
        baselines.push(result?.exchanges);
        if run == 1 {
            baseline_writes = writes;
        }
        progress.event(Event::PhaseDone {
            phase: &phase,
            seconds: began.elapsed().as_secs_f64(),
            divergent: 0,
            restarts: 0,
        });
    }
    let noise: Vec<Vec<Noise>> = baselines[0]
        .iter()
        .zip(&baselines[1])
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| Noise::learn(&x.observation, &y.observation))
                .collect()
        })
        .collect();

    let total = runner.total_requests();
    let mut divergences: Vec<Vec<Vec<Divergence>>> = scenarios
        .iter()
        .map(|s| vec![Vec::new(); s.requests.len()])
        .collect();
    let mut schedule_report = Vec::new();
    let mut restarts = 0;
    let mut local_writes: Vec<LocalWrite> = baseline_writes.clone();
    for round in 1..=options.rounds {
        let phase = format!("round {round}/{}", options.rounds);
        let steps = schedule::plan(options.seed, round, web_count, total);
        copies.begin_run(&format!("round {round}"));
        let began = Instant::now();
        let mut formation = Formation::start(shuffled_plan.clone(), &runner.setup).await?;
        let result = runner
            .replay(&mut formation, Some(&steps), &phase, None)
            .await;
        formation.stop().await;
        let writes = copies.end_run();
        let played = result?;
        restarts += played.restarts;
        let round_restarts = played.restarts;
        let found = judge(round, &steps, &played, &baselines[0], &noise, &writes);
        let mut divergent = 0;
        for (s, per_request) in found.into_iter().enumerate() {
            for (i, divergence) in per_request.into_iter().enumerate() {
                if let Some(divergence) = divergence {
                    divergent += 1;
                    divergences[s][i].push(divergence);
                }
            }
        }
        progress.event(Event::PhaseDone {
            phase: &phase,
            seconds: began.elapsed().as_secs_f64(),
            divergent,
            restarts: round_restarts,
        });
        local_writes.extend(writes);
        schedule_report.push(steps);
    }

    let mut notes: Vec<String> = scenarios
        .iter()
        .flat_map(|s| {
            s.notes
                .iter()
                .map(move |n| format!("{}: {n}", s.path.display()))
        })
        .collect();
    let mut scenario_reports = Vec::new();
    for (s, scenario) in scenarios.iter().enumerate() {
        let mut requests = Vec::new();
        for (i, spec) in scenario.requests.iter().enumerate() {
            let learned = &noise[s][i];
            if let Some(why) = &learned.unstable {
                notes.push(format!(
                    "{}:{}: request #{} ({}) was not compared: {why}; make the scenario repeatable (e.g. unique names with `{{{{$guid}}}}`)",
                    scenario.path.display(),
                    spec.line,
                    spec.index,
                    spec.summary()
                ));
            }
            requests.push(RequestReport {
                index: spec.index,
                line: spec.line,
                name: spec.name.clone(),
                method: spec.method.clone(),
                target: spec.target.display().to_owned(),
                baseline_status: baselines[0][s][i].observation.status,
                unstable: learned.unstable.clone(),
                noise: learned.describe(),
                divergences: std::mem::take(&mut divergences[s][i]),
            });
        }
        scenario_reports.push(ScenarioReport {
            file: scenario.path.display().to_string(),
            requests,
        });
    }
    let all_unstable = scenario_reports
        .iter()
        .flat_map(|s| &s.requests)
        .all(|r| r.unstable.is_some());
    if all_unstable {
        return Err(VerifyError::Baseline(
            "every request answered differently in the two baseline runs, so nothing could be compared; make the scenario repeatable (e.g. unique names with `{{$guid}}`)".into(),
        ));
    }
    let stateful = scenario_reports
        .iter()
        .flat_map(|s| &s.requests)
        .any(|r| !r.divergences.is_empty());
    if !baseline_writes.is_empty() {
        let mut files: Vec<String> = baseline_writes
            .iter()
            .take(5)
            .map(|w| format!("{} {} `{}`", w.instance, w.change, w.path))
            .collect();
        if baseline_writes.len() > 5 {
            files.push(format!("and {} more", baseline_writes.len() - 5));
        }
        notes.push(format!(
            "the app writes to its working directory ({}); nothing written there survives a restart or is seen by another instance",
            files.join(", ")
        ));
    }
    Ok((
        Report {
            version: JSON_VERSION,
            verdict: if stateful {
                Verdict::Stateful
            } else {
                Verdict::Stateless
            },
            seed: options.seed,
            rounds: options.rounds,
            web_instances: web_count,
            public_address: format!("http://127.0.0.1:{}", base_plan.port),
            elapsed_secs: 0.0,
            restarts,
            scenarios: scenario_reports,
            schedule: schedule_report,
            local_writes,
            notes: Vec::new(),
        },
        notes,
    ))
}

/// The number of `web` instances of the shuffled rounds: the formation spec's, else 3.
fn shuffled_web_count(options: &PlanOptions, plan: &Plan) -> Result<u32, VerifyError> {
    let Some(web) = plan.process_type(WEB) else {
        return Err(VerifyError::Usage(format!(
            "the Procfile `{}` has no `web` process type; verify sends the scenario's requests to web instances",
            plan.procfile.display()
        )));
    };
    let named = options
        .formation
        .as_deref()
        .and_then(|text| Spec::parse(text).ok())
        .is_some_and(|spec| spec.all.is_some() || spec.counts.iter().any(|(n, _)| n == WEB));
    let count = if named { web.count } else { DEFAULT_WEB };
    if count == 0 {
        return Err(VerifyError::Usage(
            "the formation has no `web` instance; verify needs at least one (e.g. `-m web=3`)"
                .into(),
        ));
    }
    Ok(count)
}

/// A port block where every instance of `counts` finds its port free, as the plan lays them
/// out (the first block for the router, which verify does not run, then one per type).
fn free_block(counts: &[(String, u32)]) -> Result<u16, VerifyError> {
    let mut rng = fastrand::Rng::new();
    for _ in 0..500 {
        let base = u32::from(rng.u16(100..300)) * 100;
        let free = counts.iter().enumerate().all(|(position, (_, count))| {
            (0..(*count).max(1)).all(|n| {
                let port = base + 100 * (position as u32 + 1) + n;
                u16::try_from(port)
                    .is_ok_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            })
        });
        if free {
            return Ok(base as u16);
        }
    }
    Err(VerifyError::Usage(
        "found no block of free ports between 10000 and 40000 for the instances".into(),
    ))
}

/// The plan with `counts` instances, laid out from `port`.
fn plan_with(
    options: &PlanOptions,
    port: u16,
    counts: &[(String, u32)],
) -> Result<Plan, VerifyError> {
    let spec: Vec<String> = counts.iter().map(|(n, c)| format!("{n}={c}")).collect();
    Ok(Plan::load(&PlanOptions {
        port: Some(port),
        formation: Some(spec.join(",")),
        ..options.clone()
    })?)
}

/// One request's journey in one run.
struct Exchange {
    /// The path as sent, or as written when it could not be built.
    path: String,
    observation: Observation,
    served_by: InstanceName,
    /// The run's global step number (across scenarios).
    step: usize,
    /// Why the request could not be built (shuffled rounds only).
    not_built: Option<String>,
    capture_failures: Vec<ResolveError>,
}

struct Played {
    /// Per scenario, per request.
    exchanges: Vec<Vec<Exchange>>,
    restarts: usize,
}

struct Runner<'a> {
    scenarios: &'a [Scenario],
    public_port: u16,
    dotenv: BTreeMap<String, String>,
    setup: Setup,
    progress: &'a dyn Progress,
}

impl Runner<'_> {
    fn total_requests(&self) -> usize {
        self.scenarios.iter().map(|s| s.requests.len()).sum()
    }

    /// Replays every scenario once, each as a fresh client. `steps` is the shuffled round's
    /// plan (without one, everything goes to `web.1`); `baseline` is the baseline run's
    /// number, where anything that keeps a request from being answered is an error.
    async fn replay(
        &mut self,
        formation: &mut Formation,
        steps: Option<&[Step]>,
        phase: &str,
        baseline: Option<u32>,
    ) -> Result<Played, VerifyError> {
        let total = self.total_requests();
        self.progress.event(Event::Phase {
            phase,
            requests: total,
        });
        let mut step = 0;
        let mut restarts = 0;
        let mut exchanges = Vec::new();
        for scenario in self.scenarios {
            let mut client = Replay::new(scenario, self.public_port, &self.dotenv);
            let mut played = Vec::new();
            for spec in &scenario.requests {
                let planned = steps.map(|s| s[step]);
                if let Some(restart) = planned.and_then(|p| p.restart) {
                    let name = InstanceName::new(WEB, restart.instance);
                    self.progress.event(Event::Restart {
                        phase,
                        instance: &name.to_string(),
                        signal: restart.signal,
                    });
                    formation.restart(&name, restart.signal).await?;
                    restarts += 1;
                }
                let name = InstanceName::new(WEB, planned.map_or(1, |p| p.instance));
                let info = formation.ready(&name).await?;
                let outgoing = match client.build(spec) {
                    Ok(outgoing) => outgoing,
                    Err(err) => {
                        if baseline.is_some() {
                            return Err(scenario_error(scenario, &err).into());
                        }
                        played.push(Exchange {
                            path: spec.target.display().to_owned(),
                            observation: Normalizer::default().observe(Err("not sent")),
                            served_by: name,
                            step,
                            not_built: Some(err.message),
                            capture_failures: Vec::new(),
                        });
                        step += 1;
                        continue;
                    }
                };
                let (answer, until_met) = self
                    .send(spec, &outgoing, formation.web_port(name.index))
                    .await;
                let capture_failures = client.record(spec, &outgoing, answer.as_ref().ok());
                if let Some(run) = baseline {
                    let at = format!(
                        "request #{} ({} {}, {}:{}) in baseline run {run}",
                        spec.index,
                        spec.method,
                        outgoing.path,
                        scenario.path.display(),
                        spec.line
                    );
                    if let Err(error) = &answer {
                        return Err(VerifyError::App {
                            message: format!("{at} got no answer from {name}: {error}"),
                            output: self.setup.tail.about(&name.to_string()),
                        });
                    }
                    if !until_met && let (Some(until), Ok(answer)) = (&spec.until, &answer) {
                        return Err(VerifyError::App {
                            message: format!(
                                "{at} never got {} within {} s (last answer: status {})",
                                until.describe(),
                                spec.timeout.unwrap_or(REQUEST_TIMEOUT).as_secs_f64(),
                                answer.status
                            ),
                            output: self.setup.tail.last(20),
                        });
                    }
                    if let Some(failure) = capture_failures.first() {
                        return Err(ScenarioError::at(
                            &scenario.path,
                            failure.line,
                            format!("{} (in the answer to {at})", failure.message),
                        )
                        .into());
                    }
                }
                let normalizer = Normalizer {
                    generated: client.generated(),
                    instance: Some(name.to_string()),
                    port: Some(info.port),
                    pid: info.pid,
                };
                let observation = normalizer.observe(answer.as_ref().map_err(String::as_str));
                played.push(Exchange {
                    path: outgoing.path.clone(),
                    observation,
                    served_by: name,
                    step,
                    not_built: None,
                    capture_failures,
                });
                step += 1;
                self.progress.event(Event::Request {
                    phase,
                    done: step,
                    total,
                    restarts,
                });
            }
            exchanges.push(played);
        }
        Ok(Played {
            exchanges,
            restarts,
        })
    }

    /// Sends `request` to `port`; with `# @until`, again until the answer meets it. Returns the
    /// (last) answer and whether the condition was met.
    async fn send(
        &self,
        spec: &RequestSpec,
        request: &Outgoing,
        port: u16,
    ) -> (Result<Answer, String>, bool) {
        let timeout = spec.timeout.unwrap_or(REQUEST_TIMEOUT);
        let route = Route {
            port,
            public_port: self.public_port,
        };
        let Some(until) = &spec.until else {
            return (client::send(request, route, timeout).await, true);
        };
        let deadline = Instant::now() + timeout;
        loop {
            let answer = client::send(request, route, timeout).await;
            let met = answer.as_ref().is_ok_and(|a| meets(until, a));
            if met || Instant::now() + UNTIL_INTERVAL >= deadline {
                return (answer, met);
            }
            tokio::time::sleep(UNTIL_INTERVAL).await;
        }
    }
}

fn meets(until: &Until, answer: &Answer) -> bool {
    let body = || String::from_utf8_lossy(&answer.body);
    match until {
        Until::Status(status) => answer.status == *status,
        Until::Contains(text) => body().contains(text.as_str()),
        Until::Lacks(text) => !body().contains(text.as_str()),
    }
}

fn scenario_error(scenario: &Scenario, err: &ResolveError) -> ScenarioError {
    ScenarioError::at(&scenario.path, err.line, err.message.clone())
}

/// Compares one shuffled round with the first baseline run: for every request, the
/// divergence, if there is one.
fn judge(
    round: u32,
    steps: &[Step],
    played: &Played,
    baseline: &[Vec<Exchange>],
    noise: &[Vec<Noise>],
    writes: &[LocalWrite],
) -> Vec<Vec<Option<Divergence>>> {
    let mut out = Vec::new();
    for (s, exchanges) in played.exchanges.iter().enumerate() {
        let mut earlier: Vec<(usize, String)> = Vec::new();
        let mut first_divergent: Option<usize> = None;
        let mut found = Vec::new();
        for (i, exchange) in exchanges.iter().enumerate() {
            let index = i + 1;
            let mut differences: Vec<Difference> = match &exchange.not_built {
                Some(why) => vec![Difference {
                    what: "request".into(),
                    baseline: "sent".into(),
                    shuffled: format!("not sent: {why}"),
                    diff: Vec::new(),
                }],
                None => noise[s][i].compare(&baseline[s][i].observation, &exchange.observation),
            };
            if noise[s][i].unstable.is_none() {
                for failure in &exchange.capture_failures {
                    differences.push(Difference {
                        what: "capture".into(),
                        baseline: "found".into(),
                        shuffled: failure.message.clone(),
                        diff: Vec::new(),
                    });
                }
            }
            let served_by = exchange.served_by.to_string();
            let divergence = (!differences.is_empty()).then(|| {
                // The last time this instance served this client, and restarts of it since.
                let last_served = exchanges[..i]
                    .iter()
                    .rev()
                    .find(|e| e.served_by == exchange.served_by)
                    .map(|e| e.step);
                let restarted_since = last_served.and_then(|last| {
                    let (global, signal) = (last + 1..=exchange.step).rev().find_map(|k| {
                        steps[k]
                            .restart
                            .filter(|r| r.instance == exchange.served_by.index)
                            .map(|r| (k, r.signal))
                    })?;
                    // The request of this client before which it happened.
                    let before = exchanges
                        .iter()
                        .position(|e| e.step == global)
                        .map_or(index, |p| p + 1);
                    Some((before, signal))
                });
                let mut before: Vec<String> = earlier
                    .iter()
                    .map(|(j, who)| format!("#{j} served by {who}"))
                    .collect();
                let from = if i == 0 {
                    exchange.step
                } else {
                    exchanges[i - 1].step + 1
                };
                for step in &steps[from..=exchange.step] {
                    if let Some(restart) = step.restart {
                        before.push(format!(
                            "web.{} restarted with {} just before",
                            restart.instance,
                            restart.signal.name()
                        ));
                    }
                }
                let (cause, reading) = reading::read(&Facts {
                    served_by: &served_by,
                    earlier: &earlier,
                    restarted_since,
                    follows: first_divergent,
                    writes,
                    no_answer: exchange
                        .observation
                        .status
                        .is_none()
                        .then_some(exchange.observation.error.as_deref())
                        .flatten()
                        .filter(|_| exchange.not_built.is_none()),
                    not_built: exchange.not_built.as_deref(),
                });
                Divergence {
                    round,
                    path: exchange.path.clone(),
                    served_by: served_by.clone(),
                    before,
                    differences,
                    cause,
                    reading,
                    follows: first_divergent,
                }
            });
            if divergence.is_some() {
                first_divergent.get_or_insert(index);
            }
            found.push(divergence);
            earlier.push((index, served_by));
        }
        out.push(found);
    }
    out
}
