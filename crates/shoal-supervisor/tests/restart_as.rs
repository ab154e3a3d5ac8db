//! `Handle::add_as` starts an instance again under its own name, whichever other instances are
//! gone at that moment; `Handle::add` takes the lowest free index.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_procfile::InstanceName;
use shoal_supervisor::{Handle, Log, Options, Outcome, Style, Supervisor};

mod support;

/// The names in the latest snapshot, once `done` holds for them (60 s at most).
async fn wait_for(handle: &Handle, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut snapshots = handle.watch();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<String> = snapshots
            .borrow_and_update()
            .instances
            .iter()
            .map(|i| i.name.to_string())
            .collect();
        if done(&names) {
            return names;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}; have {names:?}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), snapshots.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_comes_back_under_its_own_name() {
    let app = support::App::new("worker: exec sleep 60\n", Some("worker=3"));
    let (log, writer) = Log::start(Box::new(io::sink()), Style { color: false }, 10);
    let options = Options {
        grace: Duration::from_secs(5),
        probe_type: None,
        ..Options::default()
    };
    let (handle, task) = Supervisor::start(Arc::new(app.plan), app.runtime, log, options);
    wait_for(&handle, "three workers", |names| names.len() == 3).await;

    // Two instances stop at once; the second one comes back first.
    let (first, second) = (
        InstanceName::new("worker", 1),
        InstanceName::new("worker", 2),
    );
    handle.retire(&first).await.unwrap();
    handle.retire(&second).await.unwrap();
    wait_for(&handle, "worker.1 and worker.2 to leave", |names| {
        names == ["worker.3"]
    })
    .await;
    let third = InstanceName::new("worker", 3);
    assert!(
        handle.add_as(&third).await.is_err(),
        "worker.3 is still in the formation"
    );
    assert_eq!(handle.add_as(&second).await.unwrap(), second);
    // The lowest free index is what `add` takes.
    assert_eq!(handle.add("worker").await.unwrap(), first);
    wait_for(&handle, "all three again", |names| names.len() == 3).await;

    handle.stop();
    assert_eq!(task.await.unwrap(), Outcome::Stopped);
    writer.finish();
}
