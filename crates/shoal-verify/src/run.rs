//! The verify run: two baseline runs, the noise they show, the shuffled rounds, and the
//! comparison.
//!
//! 1. **Baseline.** The formation with one `web` instance (and the other process types) is
//!    started and the scenarios are replayed by a fresh client; then it is stopped, started
//!    afresh, and replayed again by another fresh client. Each run thus sees one long-lived
//!    instance starting from the app as built; what differs between the two runs changes by
//!    itself (timestamps, random ids, CSRF tokens) and is learned as noise.
//! 2. **Shuffled rounds.** The formation with N `web` instances (and at least two of every
//!    other type, unless `-m` names it) is started for each round, and the scenarios are
//!    replayed following the round's seeded [`schedule`]: each request to another instance
//!    than the one before, instances of every type restarted in between (SIGTERM or SIGKILL),
//!    and workers also while a request polls with `# @until` — while a job runs. verify sends
//!    each request straight to the chosen instance's port, with the headers shoal's router
//!    would add (see [`crate::client`]).
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
use crate::report::{
    Divergence, JSON_VERSION, Report, RequestReport, ScenarioReport, TypeCount, Verdict,
};
use crate::resolve::{Replay, ResolveError};
use crate::scenario::check::{Environment, check};
use crate::scenario::{self, RequestSpec, Scenario, Until};
use crate::schedule::{self, Restart, Shape, Signal, Step};

/// `web` instances in the shuffled rounds when the formation spec does not say.
pub const DEFAULT_WEB: u32 = 3;
/// Instances of every other type in the shuffled rounds when the formation spec does not name
/// the type: two, so that a later job may be taken by another worker than an earlier one.
pub const DEFAULT_OTHERS: u32 = 2;
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
    let others = shuffled_other_counts(&options.plan, &base_plan);
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
        (web_count, &others),
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
    (web_count, others): (u32, &[(String, u32)]),
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

    let baseline_counts: Vec<(String, u32)> = base_plan
        .types
        .iter()
        .map(|t| (t.name.clone(), if t.name == WEB { 1 } else { t.count }))
        .collect();
    let shuffled_counts: Vec<(String, u32)> = base_plan
        .types
        .iter()
        .map(|t| {
            let count = if t.name == WEB {
                web_count
            } else {
                others
                    .iter()
                    .find(|(name, _)| *name == t.name)
                    .map_or(0, |(_, count)| *count)
            };
            (t.name.clone(), count)
        })
        .collect();
    // The block must be free for the larger of the two formations, type by type.
    let widest: Vec<(String, u32)> = baseline_counts
        .iter()
        .zip(&shuffled_counts)
        .map(|((name, a), (_, b))| (name.clone(), (*a).max(*b)))
        .collect();
    let port = free_block(&widest)?;
    let baseline_plan = Arc::new(plan_with(&options.plan, port, &baseline_counts)?);
    let shuffled_plan = Arc::new(plan_with(&options.plan, port, &shuffled_counts)?);
    let polls: Vec<bool> = scenarios
        .iter()
        .flat_map(|s| s.requests.iter().map(|r| r.until.is_some()))
        .collect();
    let workers: u32 = others.iter().map(|(_, count)| count).sum();
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
    let mut restarts = Restarts::default();
    let mut local_writes: Vec<LocalWrite> = baseline_writes.clone();
    for round in 1..=options.rounds {
        let phase = format!("round {round}/{}", options.rounds);
        let steps = schedule::plan(
            options.seed,
            round,
            Shape {
                web: web_count,
                others,
                polls: &polls,
            },
        );
        debug_assert_eq!(steps.len(), total);
        copies.begin_run(&format!("round {round}"));
        let began = Instant::now();
        let mut formation = Formation::start(shuffled_plan.clone(), &runner.setup).await?;
        let result = runner
            .replay(&mut formation, Some(&steps), &phase, None)
            .await;
        formation.stop().await;
        let writes = copies.end_run();
        let played = result?;
        restarts.add(&played.restarts);
        let round_restarts = played.restarts.total;
        let found = judge(
            Round {
                number: round,
                steps: &steps,
                workers,
            },
            &played,
            &baselines[0],
            &noise,
            &writes,
        );
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
            formation: shuffled_counts
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(kind, count)| TypeCount {
                    kind: kind.clone(),
                    instances: *count,
                })
                .collect(),
            public_address: format!("http://127.0.0.1:{}", base_plan.port),
            elapsed_secs: 0.0,
            restarts: restarts.total,
            worker_restarts: restarts.workers,
            restarts_while_polling: restarts.while_polling,
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

/// The instances of every type but `web` in the shuffled rounds: the formation spec's count
/// for a type it names (or for every type, with `all=N`), else [`DEFAULT_OTHERS`]. Types with
/// no instance are left out.
fn shuffled_other_counts(options: &PlanOptions, plan: &Plan) -> Vec<(String, u32)> {
    let spec = options
        .formation
        .as_deref()
        .and_then(|text| Spec::parse(text).ok());
    plan.types
        .iter()
        .filter(|t| t.name != WEB)
        .map(|t| {
            let named = spec
                .as_ref()
                .is_some_and(|s| s.all.is_some() || s.counts.iter().any(|(n, _)| *n == t.name));
            let count = if named { t.count } else { DEFAULT_OTHERS };
            (t.name.clone(), count)
        })
        .filter(|(_, count)| *count > 0)
        .collect()
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
    /// When the step's worker was restarted while this request polled: after how many tries.
    restarted_after_try: Option<u32>,
    /// Whether the request polls with `# @until`: its answer is a job's result.
    polls: bool,
}

/// How many instances a run restarted.
#[derive(Debug, Default, Clone, Copy)]
struct Restarts {
    total: usize,
    /// Of instances of types other than `web`.
    workers: usize,
    /// Of those, while a request polled with `# @until`.
    while_polling: usize,
}

impl Restarts {
    fn count(&mut self, restart: &Restart, while_polling: bool) {
        self.total += 1;
        if restart.kind != WEB {
            self.workers += 1;
        }
        if while_polling {
            self.while_polling += 1;
        }
    }

    fn add(&mut self, other: &Restarts) {
        self.total += other.total;
        self.workers += other.workers;
        self.while_polling += other.while_polling;
    }
}

struct Played {
    /// Per scenario, per request.
    exchanges: Vec<Vec<Exchange>>,
    restarts: Restarts,
}

/// What a restart during polling did to the polling's deadline and when it happened.
struct Polled {
    answer: Result<Answer, String>,
    met: bool,
    /// The tries before the worker was restarted, if one was.
    restarted_after_try: Option<u32>,
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
        let mut restarts = Restarts::default();
        let mut exchanges = Vec::new();
        for scenario in self.scenarios {
            let mut client = Replay::new(scenario, self.public_port, &self.dotenv);
            let mut played = Vec::new();
            for spec in &scenario.requests {
                let planned = steps.map(|s| &s[step]);
                for restart in planned
                    .into_iter()
                    .flat_map(|p| [&p.restart, &p.worker_restart])
                    .flatten()
                {
                    self.restart(formation, phase, restart).await?;
                    restarts.count(restart, false);
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
                            restarted_after_try: None,
                            polls: spec.until.is_some(),
                        });
                        step += 1;
                        continue;
                    }
                };
                let during = planned.and_then(|p| p.worker_restart_while_polling.as_ref());
                let Polled {
                    answer,
                    met: until_met,
                    restarted_after_try,
                } = self
                    .send(spec, &outgoing, &name, formation, (phase, during))
                    .await?;
                if let Some(restart) = during.filter(|_| restarted_after_try.is_some()) {
                    restarts.count(restart, true);
                }
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
                    restarted_after_try,
                    polls: spec.until.is_some(),
                });
                step += 1;
                self.progress.event(Event::Request {
                    phase,
                    done: step,
                    total,
                    restarts: restarts.total,
                });
            }
            exchanges.push(played);
        }
        Ok(Played {
            exchanges,
            restarts,
        })
    }

    /// Restarts the instance `restart` names, saying so.
    async fn restart(
        &self,
        formation: &mut Formation,
        phase: &str,
        restart: &Restart,
    ) -> Result<(), VerifyError> {
        let name = restart.name();
        self.progress.event(Event::Restart {
            phase,
            instance: &name.to_string(),
            signal: restart.signal,
        });
        formation.restart(&name, restart.signal).await
    }

    /// Sends `request` to `web`; with `# @until`, again until the answer meets it. `during`
    /// is the worker restarted while the request polls: after the first answer that does not
    /// meet the condition (a job is in progress), or after the answer if it does. The time
    /// the restarted worker takes to come back is added to the polling's deadline: the job
    /// is given the time it had.
    async fn send(
        &self,
        spec: &RequestSpec,
        request: &Outgoing,
        web: &InstanceName,
        formation: &mut Formation,
        (phase, during): (&str, Option<&Restart>),
    ) -> Result<Polled, VerifyError> {
        let timeout = spec.timeout.unwrap_or(REQUEST_TIMEOUT);
        let route = Route {
            port: formation.web_port(web.index),
            public_port: self.public_port,
        };
        let Some(until) = &spec.until else {
            return Ok(Polled {
                answer: client::send(request, route, timeout).await,
                met: true,
                restarted_after_try: None,
            });
        };
        let mut deadline = Instant::now() + timeout;
        let mut tries = 0;
        let mut restarted_after_try = None;
        loop {
            let answer = client::send(request, route, timeout).await;
            tries += 1;
            let met = answer.as_ref().is_ok_and(|a| meets(until, a));
            if let Some(restart) = during.filter(|_| restarted_after_try.is_none()) {
                let began = Instant::now();
                self.restart(formation, phase, restart).await?;
                formation.ready(&restart.name()).await?;
                restarted_after_try = Some(tries);
                deadline += began.elapsed();
            }
            if met || Instant::now() + UNTIL_INTERVAL >= deadline {
                return Ok(Polled {
                    answer,
                    met,
                    restarted_after_try,
                });
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

/// A shuffled round as planned.
struct Round<'a> {
    number: u32,
    steps: &'a [Step],
    /// Instances of types other than `web`.
    workers: u32,
}

/// The workers restarted during one client's requests up to its request `exchanges[upto]`,
/// with when, in the client's own numbering.
fn worker_restarts(
    steps: &[Step],
    exchanges: &[Exchange],
    upto: usize,
) -> Vec<reading::WorkerRestart> {
    let mut out = Vec::new();
    for (i, exchange) in exchanges[..=upto].iter().enumerate() {
        let step = &steps[exchange.step];
        if let Some(restart) = &step.worker_restart {
            out.push(reading::WorkerRestart {
                name: restart.name().to_string(),
                signal: restart.signal,
                request: i + 1,
                while_polling: None,
            });
        }
        if let (Some(restart), Some(tries)) = (
            &step.worker_restart_while_polling,
            exchange.restarted_after_try,
        ) {
            out.push(reading::WorkerRestart {
                name: restart.name().to_string(),
                signal: restart.signal,
                request: i + 1,
                while_polling: Some(tries),
            });
        }
    }
    out
}

/// Compares one shuffled round with the first baseline run: for every request, the
/// divergence, if there is one.
fn judge(
    Round {
        number: round,
        steps,
        workers,
    }: Round<'_>,
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
                            .as_ref()
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
                let workers_restarted = worker_restarts(steps, exchanges, i);
                // Restarts since this client's previous request: the workers' while it
                // polled, then everything before this one (other clients' steps included).
                before.extend(
                    workers_restarted
                        .iter()
                        .filter(|r| r.request == index - 1 && r.while_polling.is_some())
                        .map(reading::WorkerRestart::describe),
                );
                let from = if i == 0 {
                    exchange.step
                } else {
                    exchanges[i - 1].step + 1
                };
                for step in &steps[from..=exchange.step] {
                    for restart in [&step.restart, &step.worker_restart].into_iter().flatten() {
                        before.push(format!(
                            "{} restarted with {} just before",
                            restart.name(),
                            restart.signal.name()
                        ));
                    }
                }
                before.extend(
                    workers_restarted
                        .iter()
                        .filter(|r| r.request == index && r.while_polling.is_some())
                        .map(reading::WorkerRestart::describe),
                );
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
                    job: exchange.polls.then_some(reading::Job {
                        workers,
                        restarts: &workers_restarted,
                    }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn others(formation: Option<&str>) -> Vec<(String, u32)> {
        let dir = tempfile::tempdir().unwrap();
        let procfile = dir.path().join("Procfile");
        std::fs::write(&procfile, "web: a\nworker: b\nclock: c\n").unwrap();
        let options = PlanOptions {
            procfile,
            formation: formation.map(str::to_owned),
            ..PlanOptions::default()
        };
        let plan = Plan::load(&options).unwrap();
        shuffled_other_counts(&options, &plan)
    }

    fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    #[test]
    fn every_other_type_runs_twice_unless_the_formation_names_it() {
        assert_eq!(others(None), pairs(&[("worker", 2), ("clock", 2)]));
        assert_eq!(others(Some("web=2")), pairs(&[("worker", 2), ("clock", 2)]));
        assert_eq!(others(Some("worker=1,clock=0")), pairs(&[("worker", 1)]));
        assert_eq!(
            others(Some("all=1,worker=3")),
            pairs(&[("worker", 3), ("clock", 1)])
        );
    }
}
