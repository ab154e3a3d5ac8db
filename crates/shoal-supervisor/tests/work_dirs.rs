//! A `WorkDirs` provider gives every start of every instance its own working directory; without
//! one, instances run in the app directory. It is told when each start ends, while what the
//! instance left in its scratch directory is still there.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_procfile::InstanceName;
use shoal_supervisor::{Log, Options, Outcome, Style, Supervisor, WorkDirs};

mod support;

/// Makes `base/NAME-K` for the K-th start of instance NAME, and remembers every call; at each
/// exit, remembers the instance and the files in its scratch directory.
#[derive(Debug)]
struct Numbered {
    base: PathBuf,
    calls: Mutex<Vec<PathBuf>>,
    exits: Mutex<Vec<(String, Vec<String>)>>,
}

impl WorkDirs for Numbered {
    fn prepare(&self, name: &InstanceName) -> io::Result<PathBuf> {
        let mut calls = self.calls.lock().unwrap();
        let count = calls
            .iter()
            .filter(|p| p.to_string_lossy().contains(&format!("/{name}-")))
            .count();
        let dir = self.base.join(format!("{name}-{}", count + 1));
        std::fs::create_dir_all(&dir)?;
        calls.push(dir.clone());
        Ok(dir)
    }

    fn exited(&self, name: &InstanceName, scratch: &Path) {
        let mut files: Vec<String> = std::fs::read_dir(scratch)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        self.exits.lock().unwrap().push((name.to_string(), files));
    }
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`{}` never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_runs_in_the_directory_the_provider_gives() {
    let app = support::App::new(
        "release: pwd > here\nworker: echo kept > \"$SHOAL_SCRATCH/left\"; pwd > here; exec sleep 60\n",
        None,
    );
    let dirs = tempfile::tempdir().unwrap();
    let provider = Arc::new(Numbered {
        base: dirs.path().to_path_buf(),
        calls: Mutex::new(Vec::new()),
        exits: Mutex::new(Vec::new()),
    });
    let (log, writer) = Log::start(Box::new(io::sink()), Style { color: false }, 10);
    let options = Options {
        grace: Duration::from_secs(5),
        probe_type: None,
        work_dirs: Some(provider.clone()),
        ..Options::default()
    };
    let (handle, task) = Supervisor::start(Arc::new(app.plan), app.runtime, log, options);

    let release = dirs.path().join("release.1-1");
    let first = dirs.path().join("worker.1-1");
    assert_eq!(
        wait_for_file(&release.join("here")).trim(),
        release.to_str().unwrap()
    );
    assert_eq!(
        wait_for_file(&first.join("here")).trim(),
        first.to_str().unwrap()
    );

    // A restart asks the provider again: the new run gets a new directory.
    let worker = InstanceName::new("worker", 1);
    handle.chaos_kill(&worker).await.unwrap();
    let second = dirs.path().join("worker.1-2");
    assert_eq!(
        wait_for_file(&second.join("here")).trim(),
        second.to_str().unwrap()
    );

    handle.stop();
    assert_eq!(task.await.unwrap(), Outcome::Stopped);
    writer.finish();
    assert!(
        !app.dir.path().join("here").exists(),
        "nothing ran in the app directory"
    );
    assert_eq!(provider.calls.lock().unwrap().len(), 3);
    // Each end was told with the scratch directory still as the instance left it: the
    // release's empty, the worker's holding its file after the kill and after the stop.
    let mut exits = provider.exits.lock().unwrap().clone();
    exits.sort();
    let left = vec!["left".to_owned()];
    assert_eq!(
        exits,
        [
            ("release.1".to_owned(), Vec::new()),
            ("worker.1".to_owned(), left.clone()),
            ("worker.1".to_owned(), left),
        ]
    );
}

#[derive(Debug)]
struct Failing;

impl WorkDirs for Failing {
    fn prepare(&self, _: &InstanceName) -> io::Result<PathBuf> {
        Err(io::Error::other("disk full"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_cannot_be_prepared_is_a_failed_start() {
    let app = support::App::new("worker: sleep 60\n", None);
    let (log, writer) = Log::start(Box::new(io::sink()), Style { color: false }, 10);
    let options = Options {
        restart: false,
        probe_type: None,
        work_dirs: Some(Arc::new(Failing)),
        ..Options::default()
    };
    let (_handle, task) = Supervisor::start(Arc::new(app.plan), app.runtime, log, options);
    let outcome = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the formation stops")
        .unwrap();
    writer.finish();
    match outcome {
        Outcome::InstanceExited { name, exit } => {
            assert_eq!(name, InstanceName::new("worker", 1));
            let text = exit.to_string();
            assert!(
                text.contains("cannot prepare the working directory of worker.1: disk full"),
                "{text}"
            );
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}
