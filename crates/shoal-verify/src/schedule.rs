//! The shuffled rounds' plan, made from the seed alone so that a run can be repeated with
//! `--seed`: which `web` instance serves each request (never the one that served the request
//! before, when there are several), and which instances are restarted, with SIGTERM or
//! SIGKILL.
//!
//! Before each request but the first, a `web` instance is restarted with a probability of one
//! in three (one in two with a single `web` instance): half of the time the one that served
//! the previous request — it holds whatever the app kept from it — otherwise any of them.
//!
//! When the formation runs other types (workers, which take jobs the web instances queue),
//! one of their instances is restarted before a request with a probability of one in three,
//! so that a later job may find another worker, or a fresh one. And a request that polls with
//! `# @until` is where a job runs: every instance of those types is planned to be restarted
//! while it polls, one after another, starting at a random one, so that whichever of them
//! holds the job is restarted while it runs (verify makes the next restart after each answer
//! that does not meet the condition, and stops when one does). These draws come from a
//! random stream of their own: a Procfile's `web` plan for a seed is the same with workers
//! or without them.

use serde::Serialize;
use shoal_procfile::InstanceName;

/// How an instance is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Signal {
    /// A graceful stop: SIGTERM, SIGKILL after the grace period.
    #[serde(rename = "SIGTERM")]
    Term,
    /// A crash: SIGKILL at once.
    #[serde(rename = "SIGKILL")]
    Kill,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        }
    }
}

/// An instance restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// The instance's process type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The instance's index (`TYPE.N`).
    pub instance: u32,
    pub signal: Signal,
}

impl Restart {
    pub fn name(&self) -> InstanceName {
        InstanceName::new(self.kind.clone(), self.instance)
    }
}

/// What happens for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// A `web` instance restarted before the request is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// An instance of another type (a worker) restarted before the request is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_restart: Option<Restart>,
    /// The instances of the other types, every one once, to restart while the request polls
    /// (`# @until`), in this order: the first after the first answer (when that one already
    /// meets the condition, it is the only one), each next one after the next answer that
    /// does not meet it — the job is still in progress, and one of them holds it. Those
    /// still planned when an answer meets the condition are not restarted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worker_restarts_while_polling: Vec<Restart>,
    /// The `web` instance that serves it (`web.N`).
    pub instance: u32,
}

impl Step {
    /// The restarts planned for this step, in the order they would happen.
    pub fn restarts(&self) -> impl Iterator<Item = &Restart> {
        [&self.restart, &self.worker_restart]
            .into_iter()
            .flatten()
            .chain(&self.worker_restarts_while_polling)
    }
}

/// The formation of a round and the requests it replays.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// `web` instances.
    pub web: u32,
    /// The other process types and their instances.
    pub others: &'a [(String, u32)],
    /// For each request (across scenarios), whether it polls with `# @until`.
    pub polls: &'a [bool],
}

/// The plan of round `round` (1-based).
pub fn plan(seed: u64, round: u32, shape: Shape<'_>) -> Vec<Step> {
    let instances = shape.web.max(1);
    let round_seed = seed ^ u64::from(round).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = fastrand::Rng::with_seed(round_seed);
    let mut workers_rng = fastrand::Rng::with_seed(round_seed ^ 0x6a09_e667_f3bc_c908);
    let workers: Vec<(&str, u32)> = shape
        .others
        .iter()
        .flat_map(|(kind, count)| (1..=*count).map(move |n| (kind.as_str(), n)))
        .collect();
    let worker = |rng: &mut fastrand::Rng| {
        let (kind, instance) = workers[rng.usize(..workers.len())];
        Restart {
            kind: kind.to_owned(),
            instance,
            signal: signal(rng),
        }
    };
    let restart_one_in = if instances == 1 { 2 } else { 3 };
    let mut steps: Vec<Step> = Vec::with_capacity(shape.polls.len());
    for (i, &polls) in shape.polls.iter().enumerate() {
        let previous = steps.last().map(|s| s.instance);
        let restart = (i > 0 && rng.u32(0..restart_one_in) == 0).then(|| {
            let instance = match previous {
                Some(p) if rng.bool() => p,
                _ => rng.u32(1..=instances),
            };
            Restart {
                kind: shoal_procfile::plan::WEB.to_owned(),
                instance,
                signal: signal(&mut rng),
            }
        });
        let instance = match previous {
            Some(p) if instances > 1 => {
                // Any instance but the previous one, uniformly.
                let pick = rng.u32(1..instances);
                if pick >= p { pick + 1 } else { pick }
            }
            _ => rng.u32(1..=instances),
        };
        let (worker_restart, worker_restarts_while_polling) = if workers.is_empty() {
            (None, Vec::new())
        } else {
            let before = (i > 0 && workers_rng.u32(0..3) == 0).then(|| worker(&mut workers_rng));
            let during = if polls {
                let first = workers_rng.usize(..workers.len());
                (0..workers.len())
                    .map(|k| {
                        let (kind, instance) = workers[(first + k) % workers.len()];
                        Restart {
                            kind: kind.to_owned(),
                            instance,
                            signal: signal(&mut workers_rng),
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (before, during)
        };
        steps.push(Step {
            restart,
            worker_restart,
            worker_restarts_while_polling,
            instance,
        });
    }
    steps
}

fn signal(rng: &mut fastrand::Rng) -> Signal {
    if rng.bool() {
        Signal::Term
    } else {
        Signal::Kill
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn web_only(seed: u64, round: u32, web: u32, polls: &[bool]) -> Vec<Step> {
        plan(
            seed,
            round,
            Shape {
                web,
                others: &[],
                polls,
            },
        )
    }

    proptest! {
        #[test]
        fn never_the_same_instance_twice_in_a_row(seed: u64, round in 1u32..10, n in 2u32..6, polls in proptest::collection::vec(any::<bool>(), 0..60), workers in 0u32..3) {
            let others = [("worker".to_owned(), workers), ("clock".to_owned(), 1)];
            let others = if workers == 0 { &[][..] } else { &others[..] };
            let shape = Shape { web: n, others, polls: &polls };
            let steps = plan(seed, round, shape);
            prop_assert_eq!(steps.len(), polls.len());
            for pair in steps.windows(2) {
                prop_assert_ne!(pair[0].instance, pair[1].instance);
            }
            for (step, &polling) in steps.iter().zip(&polls) {
                prop_assert!((1..=n).contains(&step.instance));
                if let Some(restart) = &step.restart {
                    prop_assert!((1..=n).contains(&restart.instance));
                    prop_assert_eq!(restart.kind.as_str(), "web");
                }
                if let Some(restart) = &step.worker_restart {
                    let count = others.iter().find(|(k, _)| *k == restart.kind).map(|(_, c)| *c);
                    prop_assert!(count.is_some_and(|c| (1..=c).contains(&restart.instance)), "{:?}", restart);
                }
                // While a request polls: every instance of every other type once, in the
                // order of the formation from a random one on, wrapping around.
                let during: Vec<(&str, u32)> = step
                    .worker_restarts_while_polling
                    .iter()
                    .map(|r| (r.kind.as_str(), r.instance))
                    .collect();
                let all: Vec<(&str, u32)> = others
                    .iter()
                    .flat_map(|(kind, count)| (1..=*count).map(move |n| (kind.as_str(), n)))
                    .collect();
                if polling && !all.is_empty() {
                    let first = all.iter().position(|w| *w == during[0]).unwrap();
                    let rotated: Vec<(&str, u32)> = all[first..].iter().chain(&all[..first]).copied().collect();
                    prop_assert_eq!(during, rotated);
                } else {
                    prop_assert!(during.is_empty());
                }
            }
            prop_assert!(steps.first().is_none_or(|s| s.restart.is_none() && s.worker_restart.is_none()));
            prop_assert_eq!(plan(seed, round, shape), steps.clone());
            // Workers do not change the web plan of a seed.
            let web: Vec<_> = steps.iter().map(|s| (s.restart.clone(), s.instance)).collect();
            let alone: Vec<_> = web_only(seed, round, n, &polls).into_iter().map(|s| (s.restart, s.instance)).collect();
            prop_assert_eq!(web, alone);
        }
    }

    #[test]
    fn rounds_differ_and_restarts_use_both_signals() {
        let polls = [false; 40];
        let a = web_only(7, 1, 3, &polls);
        let b = web_only(7, 2, 3, &polls);
        assert_ne!(a, b);
        let signals: Vec<Signal> = a
            .iter()
            .chain(&b)
            .filter_map(|s| s.restart.as_ref().map(|r| r.signal))
            .collect();
        assert!(signals.contains(&Signal::Term) && signals.contains(&Signal::Kill));
        assert!(
            web_only(7, 1, 1, &[false; 10])
                .iter()
                .all(|s| s.instance == 1)
        );
    }

    #[test]
    fn workers_are_restarted_between_requests_and_each_one_while_a_request_polls() {
        let others = [("worker".to_owned(), 2)];
        let polls: Vec<bool> = (0..40).map(|i| i % 4 == 3).collect();
        let steps: Vec<Step> = (1..=3)
            .flat_map(|round| {
                plan(
                    11,
                    round,
                    Shape {
                        web: 3,
                        others: &others,
                        polls: &polls,
                    },
                )
            })
            .collect();
        let before: Vec<&Restart> = steps
            .iter()
            .filter_map(|s| s.worker_restart.as_ref())
            .collect();
        assert!(before.len() > 10, "{before:?}");
        for index in [1, 2] {
            assert!(before.iter().any(|r| r.instance == index));
        }
        assert!(before.iter().any(|r| r.signal == Signal::Term));
        assert_eq!(
            before[0].name().to_string(),
            format!("worker.{}", before[0].instance)
        );
        // Every polling request plans both workers, starting with either, with both signals.
        let during: Vec<&Vec<Restart>> = steps
            .iter()
            .zip(polls.iter().cycle())
            .filter(|(_, polls)| **polls)
            .map(|(s, _)| &s.worker_restarts_while_polling)
            .collect();
        assert_eq!(during.len(), 30);
        assert!(during.iter().all(|d| d.len() == 2));
        for first in [1, 2] {
            assert!(during.iter().any(|d| d[0].instance == first), "{during:?}");
        }
        let signals: Vec<Signal> = during
            .iter()
            .flat_map(|d| d.iter().map(|r| r.signal))
            .collect();
        assert!(signals.contains(&Signal::Term) && signals.contains(&Signal::Kill));
    }

    /// `crates/shoal/tests/it/verify.rs` judges the `worker-cache-memory` fixture (six
    /// requests, the third and sixth polling) with `--seed 9` because of this plan: in round 1
    /// both workers are restarted between the first job's end and the second job, so the
    /// second job finds no worker holding the cache, whichever of them takes it.
    #[test]
    fn seed_9_restarts_both_workers_between_the_fixture_jobs() {
        let others = [("worker".to_owned(), 2)];
        let polls = [false, false, true, false, false, true];
        let steps = plan(
            9,
            1,
            Shape {
                web: 3,
                others: &others,
                polls: &polls,
            },
        );
        let between: Vec<u32> = steps[3..5]
            .iter()
            .filter_map(|s| s.worker_restart.as_ref().map(|r| r.instance))
            .collect();
        assert_eq!(between, [1, 2], "{steps:?}");
    }
}
