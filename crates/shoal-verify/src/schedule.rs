//! The shuffled rounds' plan, made from the seed alone so that a run can be repeated with
//! `--seed`: which `web` instance serves each request (never the one that served the request
//! before, when there are several), and which instance is restarted before a request, with
//! SIGTERM or SIGKILL.
//!
//! Before each request but the first, an instance is restarted with a probability of one in
//! three (one in two with a single `web` instance): half of the time the one that served the
//! previous request — it holds whatever the app kept from it — otherwise any of them.

use serde::Serialize;

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

/// An instance restart before a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// The `web` instance's index (`web.N`).
    pub instance: u32,
    pub signal: Signal,
}

/// What happens for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Restarted before the request is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// The `web` instance that serves it (`web.N`).
    pub instance: u32,
}

/// The plan of round `round` (1-based) for `requests` requests over `instances` web instances.
pub fn plan(seed: u64, round: u32, instances: u32, requests: usize) -> Vec<Step> {
    let instances = instances.max(1);
    let mut rng =
        fastrand::Rng::with_seed(seed ^ u64::from(round).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let restart_one_in = if instances == 1 { 2 } else { 3 };
    let mut steps: Vec<Step> = Vec::with_capacity(requests);
    for i in 0..requests {
        let previous = steps.last().map(|s| s.instance);
        let restart = (i > 0 && rng.u32(0..restart_one_in) == 0).then(|| {
            let instance = match previous {
                Some(p) if rng.bool() => p,
                _ => rng.u32(1..=instances),
            };
            let signal = if rng.bool() {
                Signal::Term
            } else {
                Signal::Kill
            };
            Restart { instance, signal }
        });
        let instance = match previous {
            Some(p) if instances > 1 => {
                // Any instance but the previous one, uniformly.
                let pick = rng.u32(1..instances);
                if pick >= p { pick + 1 } else { pick }
            }
            _ => rng.u32(1..=instances),
        };
        steps.push(Step { restart, instance });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_the_same_instance_twice_in_a_row(seed: u64, round in 1u32..10, n in 2u32..6, len in 0usize..60) {
            let steps = plan(seed, round, n, len);
            prop_assert_eq!(steps.len(), len);
            for pair in steps.windows(2) {
                prop_assert_ne!(pair[0].instance, pair[1].instance);
            }
            for step in &steps {
                prop_assert!((1..=n).contains(&step.instance));
                if let Some(restart) = step.restart {
                    prop_assert!((1..=n).contains(&restart.instance));
                }
            }
            prop_assert!(steps.first().is_none_or(|s| s.restart.is_none()));
            prop_assert_eq!(plan(seed, round, n, len), steps);
        }
    }

    #[test]
    fn rounds_differ_and_restarts_use_both_signals() {
        let a = plan(7, 1, 3, 40);
        let b = plan(7, 2, 3, 40);
        assert_ne!(a, b);
        let signals: Vec<Signal> = a
            .iter()
            .chain(&b)
            .filter_map(|s| s.restart.map(|r| r.signal))
            .collect();
        assert!(signals.contains(&Signal::Term) && signals.contains(&Signal::Kill));
        assert!(plan(7, 1, 1, 10).iter().all(|s| s.instance == 1));
    }
}
