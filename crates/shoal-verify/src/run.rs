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
//!    and workers also while a request polls with `# @until` — while a job runs: one after
//!    another, after each answer that shows the job not done, so that the one holding it is
//!    restarted in the middle of it. verify sends each request straight to the chosen
//!    instance's port, with the headers shoal's router would add (see [`crate::client`]).
//! 3. Every shuffled answer is compared with the first baseline answer, beyond the noise.
//!
//! Each request of a scenario is followed through the whole run by one value, [`Tracked`]:
//! its first baseline answer, the noise learned from both, and the rounds where it diverged.
//!
//! Every instance of every run runs in a private copy of the app directory, fresh at each
//! start ([`crate::copies`]), which records what it writes there and keeps in its scratch
//! directory (looked at after every request, and when each start ends); every wait is for
//! the supervisor's snapshots, never a sleep.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_procfile::formation::Spec;
use shoal_procfile::plan::WEB;
use shoal_procfile::{InstanceName, Plan, PlanOptions};
use shoal_supervisor::{RuntimeDir, Watchdog};

use crate::client::{self, Answer, Outgoing, Route};
use crate::compare::{Difference, Noise};
use crate::copies::{PrivateCopies, Writes};
use crate::error::{ScenarioError, VerifyError};
use crate::formation::{Formation, Setup, Tail};
use crate::isolate::Namespace;
use crate::observe::{Normalizer, Observation};
use crate::reading::{self, Facts};
use crate::report::{
    Divergence, JSON_VERSION, Report, RequestReport, RestartMade, ScenarioReport, TypeCount,
    Verdict,
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
/// The baseline runs: the first is what the rounds are compared with, the second tells which
/// parts of the answers change by themselves.
pub const BASELINE_RUNS: u32 = 2;
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
    /// Whether shoal's mounts are its own ([`crate::isolate::private_mounts`]): then the
    /// private copies are copy-on-write.
    pub namespace: Namespace,
}

/// A part of the run: one of the baseline runs, or one of the shuffled rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Baseline run `run` of [`BASELINE_RUNS`]: one `web` instance, nothing restarted.
    Baseline { run: u32 },
    /// Shuffled round `round` of `rounds`.
    Round { round: u32, rounds: u32 },
}

impl Phase {
    /// The run as the report's local writes name it: `baseline 1`, `round 2`.
    fn run_name(self) -> String {
        match self {
            Phase::Baseline { run } => format!("baseline {run}"),
            Phase::Round { round, .. } => format!("round {round}"),
        }
    }
}

impl fmt::Display for Phase {
    /// `baseline 1/2`, `round 2/3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Baseline { run } => write!(f, "baseline {run}/{BASELINE_RUNS}"),
            Phase::Round { round, rounds } => write!(f, "round {round}/{rounds}"),
        }
    }
}

/// What a run reports while it goes on.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A run begins.
    Phase { phase: Phase, requests: usize },
    /// `done` of `total` requests of the phase are answered.
    Request {
        phase: Phase,
        done: usize,
        total: usize,
        restarts: usize,
    },
    /// An instance is being restarted.
    Restart {
        phase: Phase,
        instance: &'a str,
        signal: Signal,
    },
    /// A run ended; `divergent` requests answered differently (shuffled rounds).
    PhaseDone {
        phase: Phase,
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
        Inputs {
            options: &options,
            progress,
            base_plan: &base_plan,
            web_count,
            others,
            scenarios: &scenarios,
            dotenv,
        },
        work.path(),
    )
    .await;
    crate::copies::unmount_under(work.path());
    let _ = shoal_supervisor::scratch::remove_all(work.path());
    let (mut report, notes) = result?;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.notes.extend(notes);
    Ok(report)
}

/// What a run is given, loaded and checked.
struct Inputs<'a> {
    options: &'a Options,
    progress: &'a dyn Progress,
    /// The plan as loaded, formation spec included.
    base_plan: &'a Plan,
    /// `web` instances in the shuffled rounds.
    web_count: u32,
    /// Instances of every other type in the shuffled rounds.
    others: Vec<(String, u32)>,
    scenarios: &'a [Scenario],
    dotenv: BTreeMap<String, String>,
}

/// One request of a scenario through the whole run.
struct Tracked {
    /// Its journey in the first baseline run, which every round is compared with.
    baseline: Exchange,
    /// What differed between the two baseline runs.
    noise: Noise,
    /// The rounds in which its answer differed from the baseline beyond the noise.
    divergences: Vec<Divergence>,
}

/// What the shuffled rounds did, besides the divergences.
#[derive(Default)]
struct Rounds {
    /// Each round's plan.
    schedule: Vec<Vec<Step>>,
    restarts: Restarts,
    /// Files instances wrote in their working directories and scratch directories, round
    /// by round.
    writes: Writes,
}

/// Runs the baseline and the rounds in `work` (a temporary directory for the copies and the
/// runtime files), and returns the report and the notes for the user.
async fn run_in(inputs: Inputs<'_>, work: &Path) -> Result<(Report, Vec<String>), VerifyError> {
    let Inputs {
        options,
        progress,
        base_plan,
        web_count,
        others,
        scenarios,
        dotenv,
    } = inputs;
    let io = |what: String| move |source| VerifyError::Io { what, source };
    let runtime = RuntimeDir::under(work, &base_plan.procfile);
    runtime.create().map_err(|err| {
        io("cannot prepare the runtime directory".into())(std::io::Error::other(err))
    })?;
    let copies_root = work.join("copies");
    std::fs::create_dir(&copies_root)
        .map_err(io(format!("cannot create `{}`", copies_root.display())))?;
    let copies = Arc::new(PrivateCopies::new(
        &base_plan.app_dir,
        &copies_root,
        &options.namespace,
    ));
    let tail = Tail::new(options.log_file.clone()).map_err(io(format!(
        "cannot write the log file `{}`",
        options
            .log_file
            .as_deref()
            .unwrap_or(Path::new(""))
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
    let mut runner = Runner {
        scenarios,
        public_port: base_plan.port,
        dotenv,
        setup: Setup {
            runtime,
            copies,
            watchdog: options.watchdog.clone(),
            grace: options.grace,
            boot_timeout: options.boot_timeout,
            health_path: options.health_path.clone(),
            tail,
        },
        progress,
    };

    let (mut tracked, baseline_writes) = runner.baselines(&baseline_plan).await?;
    let rounds = runner
        .rounds(&shuffled_plan, options, (web_count, &others), &mut tracked)
        .await?;

    let mut notes: Vec<String> = scenarios
        .iter()
        .flat_map(|s| {
            s.notes
                .iter()
                .map(move |n| format!("{}: {n}", s.path.display()))
        })
        .collect();
    let mut scenario_reports = Vec::new();
    for (scenario, requests) in scenarios.iter().zip(tracked) {
        let mut reports = Vec::new();
        for (spec, request) in scenario.requests.iter().zip(requests) {
            if let Some(why) = &request.noise.unstable {
                notes.push(format!(
                    "{}:{}: request #{} ({}) was not compared: {why}; make the scenario repeatable (e.g. unique names with `{{{{$guid}}}}`)",
                    scenario.path.display(),
                    spec.line,
                    spec.index,
                    spec.summary()
                ));
            }
            reports.push(RequestReport {
                index: spec.index,
                line: spec.line,
                name: spec.name.clone(),
                method: spec.method.clone(),
                target: spec.target.display().to_owned(),
                baseline_status: request.baseline.observation.status,
                unstable: request.noise.unstable.clone(),
                noise: request.noise.describe(),
                divergences: request.divergences,
            });
        }
        scenario_reports.push(ScenarioReport {
            file: scenario.path.display().to_string(),
            requests: reports,
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
    if !baseline_writes.app.is_empty() {
        let mut files: Vec<String> = baseline_writes
            .app
            .iter()
            .take(5)
            .map(|w| format!("{} {} `{}`", w.instance, w.change, w.shown()))
            .collect();
        if baseline_writes.app.len() > 5 {
            files.push(format!("and {} more", baseline_writes.app.len() - 5));
        }
        notes.push(format!(
            "the app writes to its working directory ({}); nothing written there survives a restart or is seen by another instance",
            files.join(", ")
        ));
    }
    let copies = runner.setup.copies.made();
    notes.extend(copies.note());
    let mut local_writes = baseline_writes.app;
    local_writes.extend(rounds.writes.app);
    let mut scratch_writes = baseline_writes.scratch;
    scratch_writes.extend(rounds.writes.scratch);
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
            copies,
            elapsed_secs: 0.0,
            restarts: rounds.restarts.total(),
            worker_restarts: rounds.restarts.workers(),
            restarts_while_polling: rounds.restarts.while_polling(),
            scenarios: scenario_reports,
            schedule: rounds.schedule,
            restarts_made: rounds.restarts.made,
            local_writes,
            scratch_writes,
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
    /// The restarts of the step's workers made while this request polled, in the plan's
    /// order: after how many tries each one was made.
    restarted_after_tries: Vec<u32>,
    /// Whether the request polls with `# @until`: its answer is a job's result.
    polls: bool,
}

/// The restarts a run made.
#[derive(Debug, Default, Clone)]
struct Restarts {
    /// Each one, in order (restarts are made in the shuffled rounds only).
    made: Vec<RestartMade>,
}

impl Restarts {
    /// Counts `restart`, made in round `phase` before or while the request of round step
    /// `step` (while it polled: after `after_try` tries), at `at_ms`.
    fn count(
        &mut self,
        phase: Phase,
        step: usize,
        restart: &Restart,
        after_try: Option<u32>,
        at_ms: u64,
    ) {
        if let Phase::Round { round, .. } = phase {
            self.made.push(RestartMade {
                round,
                request: step + 1,
                restart: restart.clone(),
                after_try,
                at_ms,
            });
        }
    }

    fn total(&self) -> usize {
        self.made.len()
    }

    /// Of instances of types other than `web`.
    fn workers(&self) -> usize {
        self.made.iter().filter(|r| r.restart.kind != WEB).count()
    }

    /// Of those, while a request polled with `# @until`.
    fn while_polling(&self) -> usize {
        self.made.iter().filter(|r| r.after_try.is_some()).count()
    }
}

struct Played {
    /// Per scenario, per request.
    exchanges: Vec<Vec<Exchange>>,
    restarts: Restarts,
}

/// The answer to a request, whether it met its `# @until`, and the workers restarted while
/// it polled.
struct Polled {
    answer: Result<Answer, String>,
    met: bool,
    /// For each restart made while it polled, in the plan's order: the tries before it, and
    /// when its signal was sent (milliseconds since the Unix epoch).
    restarted: Vec<(u32, u64)>,
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

    /// Starts `plan`, replays every scenario in it as [`Runner::replay`] does, and stops it.
    /// Returns what was played and the files instances wrote in their copies of the app and
    /// left in their scratch directories.
    async fn run_once(
        &mut self,
        plan: &Arc<Plan>,
        phase: Phase,
        steps: Option<&[Step]>,
    ) -> Result<(Played, Writes), VerifyError> {
        self.setup.copies.begin_run(&phase.run_name());
        let mut formation = Formation::start(plan.clone(), &self.setup).await?;
        let result = self.replay(&mut formation, phase, steps).await;
        formation.stop().await;
        let writes = self.setup.copies.end_run();
        Ok((result?, writes))
    }

    /// The baseline runs: every request tracked with its first answer and the noise the two
    /// runs show, and the files the first run wrote.
    async fn baselines(
        &mut self,
        plan: &Arc<Plan>,
    ) -> Result<(Vec<Vec<Tracked>>, Writes), VerifyError> {
        let mut runs = Vec::new();
        for run in 1..=BASELINE_RUNS {
            let phase = Phase::Baseline { run };
            let began = Instant::now();
            runs.push(self.run_once(plan, phase, None).await?);
            self.progress.event(Event::PhaseDone {
                phase,
                seconds: began.elapsed().as_secs_f64(),
                divergent: 0,
                restarts: 0,
            });
        }
        let mut runs = runs.into_iter();
        let (first, writes) = runs.next().expect("the first baseline run");
        let (second, _) = runs.next().expect("the second baseline run");
        Ok((learn(first, &second), writes))
    }

    /// The shuffled rounds, each in `plan` following its schedule, every answer judged
    /// against `tracked` (where the divergences go).
    async fn rounds(
        &mut self,
        plan: &Arc<Plan>,
        options: &Options,
        (web, others): (u32, &[(String, u32)]),
        tracked: &mut [Vec<Tracked>],
    ) -> Result<Rounds, VerifyError> {
        let polls: Vec<bool> = self
            .scenarios
            .iter()
            .flat_map(|s| s.requests.iter().map(|r| r.until.is_some()))
            .collect();
        let workers: u32 = others.iter().map(|(_, count)| count).sum();
        let mut out = Rounds::default();
        for round in 1..=options.rounds {
            let phase = Phase::Round {
                round,
                rounds: options.rounds,
            };
            let steps = schedule::plan(
                options.seed,
                round,
                Shape {
                    web,
                    others,
                    polls: &polls,
                },
            );
            debug_assert_eq!(steps.len(), self.total_requests());
            let began = Instant::now();
            let (played, writes) = self.run_once(plan, phase, Some(&steps)).await?;
            let divergent = judge(
                &Round {
                    number: round,
                    steps: &steps,
                    workers,
                    writes: &writes,
                },
                &played,
                tracked,
            );
            self.progress.event(Event::PhaseDone {
                phase,
                seconds: began.elapsed().as_secs_f64(),
                divergent,
                restarts: played.restarts.total(),
            });
            out.restarts.made.extend(played.restarts.made);
            out.writes.app.extend(writes.app);
            out.writes.scratch.extend(writes.scratch);
            out.schedule.push(steps);
        }
        Ok(out)
    }

    /// Replays every scenario once, each as a fresh client. `steps` is the shuffled round's
    /// plan (without one, everything goes to `web.1`). In a baseline run, anything that keeps
    /// a request from being answered is an error.
    async fn replay(
        &mut self,
        formation: &mut Formation,
        phase: Phase,
        steps: Option<&[Step]>,
    ) -> Result<Played, VerifyError> {
        let baseline = match phase {
            Phase::Baseline { run } => Some(run),
            Phase::Round { .. } => None,
        };
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
                    let at_ms = self.restart(formation, phase, restart).await?;
                    restarts.count(phase, step, restart, None, at_ms);
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
                            restarted_after_tries: Vec::new(),
                            polls: spec.until.is_some(),
                        });
                        step += 1;
                        continue;
                    }
                };
                let during = planned.map_or(&[][..], |p| &p.worker_restarts_while_polling);
                let Polled {
                    answer,
                    met: until_met,
                    restarted,
                } = self
                    .send(spec, &outgoing, &name, formation, (phase, during))
                    .await?;
                for (restart, (tries, at_ms)) in during.iter().zip(&restarted) {
                    restarts.count(phase, step, restart, Some(*tries), *at_ms);
                }
                let restarted_after_tries = restarted.iter().map(|(tries, _)| *tries).collect();
                self.observe_scratch(formation);
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
                    restarted_after_tries,
                    polls: spec.until.is_some(),
                });
                step += 1;
                self.progress.event(Event::Request {
                    phase,
                    done: step,
                    total,
                    restarts: restarts.total(),
                });
            }
            exchanges.push(played);
        }
        Ok(Played {
            exchanges,
            restarts,
        })
    }

    /// Looks at what every instance keeps in its scratch directory now: a file one request
    /// left there and a later one deleted (a session file, until sign-out) is recorded too.
    fn observe_scratch(&self, formation: &Formation) {
        for name in formation.names() {
            let scratch = self.setup.runtime.scratch(name);
            self.setup.copies.observe_scratch(name, &scratch);
        }
    }

    /// Restarts the instance `restart` names, saying so. Returns when the signal was sent,
    /// in milliseconds since the Unix epoch.
    async fn restart(
        &self,
        formation: &mut Formation,
        phase: Phase,
        restart: &Restart,
    ) -> Result<u64, VerifyError> {
        let name = restart.name();
        self.progress.event(Event::Restart {
            phase,
            instance: &name.to_string(),
            signal: restart.signal,
        });
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        formation.restart(&name, restart.signal).await?;
        Ok(at_ms)
    }

    /// Sends `request` to `web`; with `# @until`, again until the answer meets it. `during`
    /// are the workers to restart while the request polls, one after another: the first
    /// after the first answer (even when it meets the condition: then between this job and
    /// the next), each next one after the next answer that does not meet it — the job is
    /// still in progress, so whichever worker holds it is restarted while it runs. The time
    /// a restarted worker takes to come back is added to the polling's deadline: the job is
    /// given the time it had.
    async fn send(
        &self,
        spec: &RequestSpec,
        request: &Outgoing,
        web: &InstanceName,
        formation: &mut Formation,
        (phase, during): (Phase, &[Restart]),
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
                restarted: Vec::new(),
            });
        };
        let mut deadline = Instant::now() + timeout;
        let mut tries = 0;
        let mut restarted = Vec::new();
        loop {
            let answer = client::send(request, route, timeout).await;
            tries += 1;
            let met = answer.as_ref().is_ok_and(|a| meets(until, a));
            let next = during.get(restarted.len());
            if let Some(restart) = next.filter(|_| !met || tries == 1) {
                let began = Instant::now();
                let at_ms = self.restart(formation, phase, restart).await?;
                formation.ready(&restart.name()).await?;
                restarted.push((tries, at_ms));
                deadline += began.elapsed();
            }
            if met || Instant::now() + UNTIL_INTERVAL >= deadline {
                return Ok(Polled {
                    answer,
                    met,
                    restarted,
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
        for (restart, tries) in step
            .worker_restarts_while_polling
            .iter()
            .zip(&exchange.restarted_after_tries)
        {
            out.push(reading::WorkerRestart {
                name: restart.name().to_string(),
                signal: restart.signal,
                request: i + 1,
                while_polling: Some(*tries),
            });
        }
    }
    out
}

/// Every request of the `first` baseline run, tracked with the noise the `second` one shows.
fn learn(first: Played, second: &Played) -> Vec<Vec<Tracked>> {
    first
        .exchanges
        .into_iter()
        .zip(&second.exchanges)
        .map(|(firsts, seconds)| {
            firsts
                .into_iter()
                .zip(seconds)
                .map(|(baseline, again)| Tracked {
                    noise: Noise::learn(&baseline.observation, &again.observation),
                    baseline,
                    divergences: Vec::new(),
                })
                .collect()
        })
        .collect()
}

impl Tracked {
    /// How `exchange`, this request in a shuffled round, differs from the baseline beyond
    /// the noise.
    fn differences(&self, exchange: &Exchange) -> Vec<Difference> {
        let mut differences = match &exchange.not_built {
            Some(why) => vec![Difference {
                what: "request".into(),
                baseline: "sent".into(),
                shuffled: format!("not sent: {why}"),
                diff: Vec::new(),
            }],
            None => self
                .noise
                .compare(&self.baseline.observation, &exchange.observation),
        };
        if self.noise.unstable.is_none() {
            for failure in &exchange.capture_failures {
                differences.push(Difference {
                    what: "capture".into(),
                    baseline: "found".into(),
                    shuffled: failure.message.clone(),
                    diff: Vec::new(),
                });
            }
        }
        differences
    }
}

/// A shuffled round as planned and as it went.
struct Round<'a> {
    number: u32,
    steps: &'a [Step],
    /// Instances of types other than `web`.
    workers: u32,
    /// Files instances wrote in their working directories and left in their scratch
    /// directories during the round.
    writes: &'a Writes,
}

/// Compares one shuffled round with the first baseline run: every divergence goes to its
/// request. Returns how many requests diverged.
fn judge(round: &Round<'_>, played: &Played, tracked: &mut [Vec<Tracked>]) -> usize {
    let mut divergent = 0;
    for (exchanges, requests) in played.exchanges.iter().zip(tracked.iter_mut()) {
        // This client's requests so far: (index, the instance that served it).
        let mut earlier: Vec<(usize, String)> = Vec::new();
        let mut first_divergent: Option<usize> = None;
        for (i, (exchange, request)) in exchanges.iter().zip(requests.iter_mut()).enumerate() {
            let differences = request.differences(exchange);
            if !differences.is_empty() {
                let divergence =
                    round.divergence(exchanges, i, &earlier, first_divergent, differences);
                request.divergences.push(divergence);
                divergent += 1;
                first_divergent.get_or_insert(i + 1);
            }
            earlier.push((i + 1, exchange.served_by.to_string()));
        }
    }
    divergent
}

impl Round<'_> {
    /// The divergence of one client's request `exchanges[i]`, with what happened before it
    /// and the reading.
    fn divergence(
        &self,
        exchanges: &[Exchange],
        i: usize,
        earlier: &[(usize, String)],
        follows: Option<usize>,
        differences: Vec<Difference>,
    ) -> Divergence {
        let exchange = &exchanges[i];
        let served_by = exchange.served_by.to_string();
        let workers_restarted = worker_restarts(self.steps, exchanges, i);
        let (cause, reading) = reading::read(&Facts {
            served_by: &served_by,
            earlier,
            restarted_since: self.restarted_since(exchanges, i),
            follows,
            writes: &self.writes.app,
            scratch: &self.writes.scratch,
            no_answer: exchange
                .observation
                .status
                .is_none()
                .then_some(exchange.observation.error.as_deref())
                .flatten()
                .filter(|_| exchange.not_built.is_none()),
            not_built: exchange.not_built.as_deref(),
            job: exchange.polls.then_some(reading::Job {
                workers: self.workers,
                restarts: &workers_restarted,
            }),
        });
        Divergence {
            round: self.number,
            path: exchange.path.clone(),
            before: self.before(exchanges, i, earlier, &workers_restarted),
            served_by,
            differences,
            cause,
            reading,
            follows,
        }
    }

    /// The last restart of the instance that served `exchanges[i]` since it last served this
    /// client: the client's request before which it happened, and the signal.
    fn restarted_since(&self, exchanges: &[Exchange], i: usize) -> Option<(usize, Signal)> {
        let exchange = &exchanges[i];
        let last = exchanges[..i]
            .iter()
            .rev()
            .find(|e| e.served_by == exchange.served_by)?
            .step;
        let (global, signal) = (last + 1..=exchange.step).rev().find_map(|k| {
            self.steps[k]
                .restart
                .as_ref()
                .filter(|r| r.instance == exchange.served_by.index)
                .map(|r| (k, r.signal))
        })?;
        // The request of this client before which it happened.
        let before = exchanges
            .iter()
            .position(|e| e.step == global)
            .map_or(i + 1, |p| p + 1);
        Some((before, signal))
    }

    /// What happened before `exchanges[i]`: which instances served the client's earlier
    /// requests, then the restarts since its previous request — the workers' while that one
    /// polled, then everything before this one (other clients' steps included), then the
    /// workers' while this one polled.
    fn before(
        &self,
        exchanges: &[Exchange],
        i: usize,
        earlier: &[(usize, String)],
        workers_restarted: &[reading::WorkerRestart],
    ) -> Vec<String> {
        let index = i + 1;
        let exchange = &exchanges[i];
        let mut before: Vec<String> = earlier
            .iter()
            .map(|(j, who)| format!("#{j} served by {who}"))
            .collect();
        let while_polling = |request: usize| {
            workers_restarted
                .iter()
                .filter(move |r| r.request == request && r.while_polling.is_some())
                .map(reading::WorkerRestart::describe)
        };
        before.extend(while_polling(index - 1));
        let from = if i == 0 {
            exchange.step
        } else {
            exchanges[i - 1].step + 1
        };
        for step in &self.steps[from..=exchange.step] {
            for restart in [&step.restart, &step.worker_restart].into_iter().flatten() {
                before.push(format!(
                    "{} restarted with {} just before",
                    restart.name(),
                    restart.signal.name()
                ));
            }
        }
        before.extend(while_polling(index));
        before
    }
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
