//! The plain-language reading of a divergence: what most likely made the answer differ, from
//! what verify knows about the round — which instance served the request, which ones served
//! the client's earlier requests, which were restarted in between, which workers ran and were
//! restarted when the answer is a job's result, and which files instances wrote to their
//! working directories or left in their temporary (scratch) directories.

use serde::Serialize;

use crate::copies::LocalWrite;
use crate::schedule::Signal;

/// The kind of cause a reading names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// Another process served it than the one that kept the state.
    Process,
    /// The process that kept the state was restarted.
    Restart,
    /// The instance gave no answer.
    NoAnswer,
    /// The request could not even be built: a value it needs was not in an earlier answer.
    MissingValue,
    /// The answer is a job's result (the request polled with `# @until`), and the job ran on
    /// another worker than in the baseline, or on one that was restarted.
    Worker,
}

/// A worker (an instance of a type other than `web`) restarted during a client's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRestart {
    /// `worker.2`.
    pub name: String,
    pub signal: Signal,
    /// The client's request before which it happened, or during which.
    pub request: usize,
    /// Restarted while that request polled, after this many tries.
    pub while_polling: Option<u32>,
}

impl WorkerRestart {
    /// `worker.1 restarted with SIGKILL while #6 polled (after try 1)`.
    pub fn describe(&self) -> String {
        match self.while_polling {
            Some(tries) => format!(
                "{} restarted with {} while #{} polled (after try {tries})",
                self.name,
                self.signal.name(),
                self.request
            ),
            None => format!(
                "{} restarted with {} before #{}",
                self.name,
                self.signal.name(),
                self.request
            ),
        }
    }

    /// `with SIGKILL before request #4`.
    fn when(&self) -> String {
        match self.while_polling {
            Some(_) => format!(
                "with {} while request #{} waited for its job",
                self.signal.name(),
                self.request
            ),
            None => format!(
                "with {} before request #{}",
                self.signal.name(),
                self.request
            ),
        }
    }
}

/// What is known about the workers when an answer is a job's result.
pub struct Job<'a> {
    /// Instances of types other than `web` in the round.
    pub workers: u32,
    /// Those restarted during the client's requests up to this one.
    pub restarts: &'a [WorkerRestart],
}

/// What is known about one divergent request of a round.
pub struct Facts<'a> {
    pub served_by: &'a str,
    /// Earlier requests of the same client in this round: (index, instance).
    pub earlier: &'a [(usize, String)],
    /// Restarts of the serving instance after it last served this client: the request before
    /// which it happened, and the signal.
    pub restarted_since: Option<(usize, Signal)>,
    /// The first divergent request of this client in this round, when it is an earlier one.
    pub follows: Option<usize>,
    /// Files instances wrote to their working directories during the round.
    pub writes: &'a [LocalWrite],
    /// Files instances left in their scratch directories (`SHOAL_SCRATCH`, `TMPDIR`) during
    /// the round, found when each start ended, before the directory was emptied.
    pub scratch: &'a [LocalWrite],
    /// The instance gave no answer (the error), or the request could not be built.
    pub no_answer: Option<&'a str>,
    pub not_built: Option<&'a str>,
    /// The request polled with `# @until` (its answer is a job's result) in a formation with
    /// workers.
    pub job: Option<Job<'a>>,
}

/// The cause and the sentence that explains it.
pub fn read(facts: &Facts<'_>) -> (Cause, String) {
    let (cause, mut text) = if let Some(why) = facts.not_built {
        (
            Cause::MissingValue,
            format!(
                "the request could not be sent as in the baseline: {why} — an earlier answer already lacked it"
            ),
        )
    } else if let Some(error) = facts.no_answer {
        (
            Cause::NoAnswer,
            format!(
                "{} gave no answer ({error}); the app may fail on a request that needs what only another process had",
                facts.served_by
            ),
        )
    } else if let Some(reading) = facts.job.as_ref().and_then(worker_reading) {
        (Cause::Worker, reading)
    } else if let Some((before, signal)) = facts
        .restarted_since
        .filter(|_| facts.earlier.iter().all(|(_, who)| who == facts.served_by))
    {
        // Every earlier request went to this very instance: only the restart can explain it.
        (
            Cause::Restart,
            format!(
                "the answer changed after a restart: {} served this client's earlier requests and was restarted with {} before request #{before} — state kept in its memory or on its local disk was lost",
                facts.served_by,
                signal.name()
            ),
        )
    } else {
        let mut others: Vec<String> = Vec::new();
        for (_, who) in facts.earlier {
            if who != facts.served_by && !others.contains(who) {
                others.push(who.clone());
            }
        }
        let earlier = if others.is_empty() {
            "other processes".to_owned()
        } else {
            others.join(" and ")
        };
        let restarted = facts
            .restarted_since
            .map(|(before, signal)| {
                format!(
                    ", and {} itself was restarted with {} before request #{before}",
                    facts.served_by,
                    signal.name()
                )
            })
            .unwrap_or_default();
        (
            Cause::Process,
            format!(
                "the answer depended on which process served it: {} answered, but this client's earlier requests went to {earlier}{restarted} — state kept in one process is not seen by another",
                facts.served_by
            ),
        )
    };
    if matches!(cause, Cause::Process | Cause::Restart | Cause::Worker) {
        let mut kept: Vec<String> = Vec::new();
        if !facts.writes.is_empty() {
            let mut files: Vec<String> = facts
                .writes
                .iter()
                .take(SHOWN)
                .map(|w| format!("{} {} `{}`", w.instance, w.change, w.shown()))
                .collect();
            if facts.writes.len() > SHOWN {
                files.push(format!("{} more", facts.writes.len() - SHOWN));
            }
            kept.push(format!(
                "instances wrote to their working directories ({})",
                files.join(", ")
            ));
        }
        if !facts.scratch.is_empty() {
            kept.push(left_in_scratch(facts.scratch));
        }
        if kept.is_empty() {
            text.push_str(
                "; no instance wrote to its working directory or left a file in its temporary directory, so it was most likely kept in process memory",
            );
        } else {
            text.push_str(&format!(
                "; {}: state kept on local disk",
                kept.join(", and ")
            ));
        }
    }
    if let Some(first) = facts.follows {
        text = format!("probably a consequence of the divergence at request #{first}: {text}");
    }
    (cause, text)
}

/// Files named in a reading, of each place; the others are counted.
const SHOWN: usize = 4;

/// `web.1 wrote `sessions/abc` and `sessions/def` in its temporary directory, emptied at
/// restart`, with each instance's files together.
fn left_in_scratch(scratch: &[LocalWrite]) -> String {
    let mut by_instance: Vec<(&str, Vec<String>)> = Vec::new();
    for write in scratch.iter().take(SHOWN) {
        let file = format!("`{}`", write.shown());
        match by_instance
            .iter_mut()
            .find(|(who, _)| *who == write.instance)
        {
            Some((_, files)) => files.push(file),
            None => by_instance.push((&write.instance, vec![file])),
        }
    }
    let mut parts: Vec<String> = by_instance
        .iter()
        .map(|(who, files)| format!("{who} wrote {}", and_list(files)))
        .collect();
    if scratch.len() > SHOWN {
        parts.push(format!("{} more", scratch.len() - SHOWN));
    }
    let one = scratch.iter().all(|w| w.instance == scratch[0].instance);
    format!(
        "{} in {}, emptied at restart",
        and_list(&parts),
        if one {
            "its temporary directory"
        } else {
            "their temporary directories"
        }
    )
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The reading of a job's result that changed, when workers can explain it: one was
/// restarted during the client's requests, or several ran.
fn worker_reading(job: &Job<'_>) -> Option<String> {
    if job.restarts.is_empty() {
        return (job.workers > 1).then(|| {
            format!(
                "the answer is a job's result, and the job ran on one of {} worker instances: the result depended on which worker ran it — state kept in one worker is not seen by another",
                job.workers
            )
        });
    }
    let mut names: Vec<&str> = Vec::new();
    for restart in job.restarts {
        if !names.contains(&restart.name.as_str()) {
            names.push(&restart.name);
        }
    }
    let restarted: Vec<String> = names
        .iter()
        .map(|name| {
            let when: Vec<String> = job
                .restarts
                .iter()
                .filter(|r| r.name == *name)
                .map(WorkerRestart::when)
                .collect();
            format!("{name} was restarted ({})", when.join(", "))
        })
        .collect();
    Some(format!(
        "the answer changed after {}: the job's result depended on something {} kept",
        restarted.join(" and "),
        names.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn facts<'a>(earlier: &'a [(usize, String)], writes: &'a [LocalWrite]) -> Facts<'a> {
        Facts {
            served_by: "web.2",
            earlier,
            restarted_since: None,
            follows: None,
            writes,
            scratch: &[],
            no_answer: None,
            not_built: None,
            job: None,
        }
    }

    #[test]
    fn readings_name_the_cause() {
        let earlier = vec![(1, "web.1".to_owned()), (2, "web.3".to_owned())];
        let (cause, text) = read(&facts(&earlier, &[]));
        assert_eq!(cause, Cause::Process);
        assert!(text.starts_with("the answer depended on which process served it: web.2 answered, but this client's earlier requests went to web.1 and web.3"), "{text}");
        assert!(
            text.contains("most likely kept in process memory"),
            "{text}"
        );

        let writes = vec![LocalWrite::new(
            "round 1",
            "web.1",
            Path::new("cache/7.json"),
            "created",
        )];
        let earlier = vec![(1, "web.2".to_owned()), (2, "web.1".to_owned())];
        let mut f = facts(&earlier, &writes);
        f.restarted_since = Some((2, Signal::Kill));
        f.follows = Some(2);
        let (cause, text) = read(&f);
        assert_eq!(cause, Cause::Process);
        assert!(
            text.starts_with(
                "probably a consequence of the divergence at request #2: the answer depended on which process served it: web.2 answered, but this client's earlier requests went to web.1, and web.2 itself was restarted with SIGKILL before request #2"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("(web.1 created `cache/7.json`): state kept on local disk"),
            "{text}"
        );

        // With one instance, only restarts can lose state.
        let earlier = vec![(1, "web.2".to_owned()), (2, "web.2".to_owned())];
        let mut f = facts(&earlier, &[]);
        f.restarted_since = Some((3, Signal::Term));
        let (cause, text) = read(&f);
        assert_eq!(cause, Cause::Restart);
        let _ = text;

        // A job's result: the workers explain it, not the web instance that answered.
        let restarts = vec![
            WorkerRestart {
                name: "worker.1".into(),
                signal: Signal::Kill,
                request: 4,
                while_polling: None,
            },
            WorkerRestart {
                name: "worker.2".into(),
                signal: Signal::Term,
                request: 3,
                while_polling: Some(1),
            },
        ];
        f.job = Some(Job {
            workers: 2,
            restarts: &restarts,
        });
        let (cause, text) = read(&f);
        assert_eq!(cause, Cause::Worker);
        assert!(
            text.starts_with(
                "the answer changed after worker.1 was restarted (with SIGKILL before request #4) and worker.2 was restarted (with SIGTERM while request #3 waited for its job): the job's result depended on something worker.1 or worker.2 kept; no instance wrote"
            ),
            "{text}"
        );
        assert_eq!(
            restarts[1].describe(),
            "worker.2 restarted with SIGTERM while #3 polled (after try 1)"
        );
        f.job = Some(Job {
            workers: 2,
            restarts: &[],
        });
        let (cause, text) = read(&f);
        assert_eq!(cause, Cause::Worker);
        assert!(
            text.starts_with(
                "the answer is a job's result, and the job ran on one of 2 worker instances"
            ),
            "{text}"
        );
        // One worker, never restarted: the job cannot be the cause.
        f.job = Some(Job {
            workers: 1,
            restarts: &[],
        });
        let (cause, text) = read(&f);
        assert_eq!(cause, Cause::Restart);
        assert!(
            text.starts_with(
                "the answer changed after a restart: web.2 served this client's earlier requests and was restarted with SIGTERM before request #3"
            ),
            "{text}"
        );
    }

    fn left(instance: &str, path: &str) -> LocalWrite {
        LocalWrite::new("round 1", instance, Path::new(path), "created")
    }

    #[test]
    fn files_left_in_a_temporary_directory_are_named() {
        let earlier = vec![(1, "web.1".to_owned())];
        let scratch = vec![left("web.1", "sessions/abc")];
        let mut f = facts(&earlier, &[]);
        f.scratch = &scratch;
        let (cause, text) = read(&f);
        assert_eq!(cause, Cause::Process);
        assert!(
            text.ends_with(
                "; web.1 wrote `sessions/abc` in its temporary directory, emptied at restart: state kept on local disk"
            ),
            "{text}"
        );

        // Several instances, more files than are named, and the working directory too.
        let scratch = vec![
            left("web.1", "sessions/a"),
            left("web.2", "sessions/b"),
            left("web.1", "sessions/c"),
            left("web.3", "sessions/d"),
            left("web.3", "sessions/e"),
        ];
        let writes = vec![LocalWrite::new(
            "round 1",
            "web.2",
            Path::new("data.json"),
            "changed",
        )];
        let mut f = facts(&earlier, &writes);
        f.scratch = &scratch;
        let (_, text) = read(&f);
        assert!(
            text.ends_with(
                "; instances wrote to their working directories (web.2 changed `data.json`), and web.1 wrote `sessions/a` and `sessions/c`, web.2 wrote `sessions/b`, web.3 wrote `sessions/d` and 1 more in their temporary directories, emptied at restart: state kept on local disk"
            ),
            "{text}"
        );

        // Nothing on disk anywhere: process memory.
        let (_, text) = read(&facts(&earlier, &[]));
        assert!(
            text.ends_with(
                "; no instance wrote to its working directory or left a file in its temporary directory, so it was most likely kept in process memory"
            ),
            "{text}"
        );
    }
}
