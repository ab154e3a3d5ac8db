//! `Handle::boot` answers once an instance is up, or says why it is not: it exited, it was
//! killed at its boot timeout, or the formation is stopping. One given up leaves the formation
//! and the log never says it restarts; one that may restart does.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_supervisor::{Handle, IfItFails, Log, Options, Outcome, Phase, Style, Supervisor};

mod support;

/// The log, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits (60 s at most) until the log contains `line`.
    async fn wait_for(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.text().contains(line) {
            assert!(
                Instant::now() < deadline,
                "no `{line}` in the log:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A formation of `web` (probed, none running at first) whose command is `command`.
fn formation(
    command: &str,
    boot_timeout: Duration,
) -> (Handle, Captured, impl Future<Output = Outcome>) {
    let app = support::App::new(&format!("web: {command}\n"), Some("web=0"));
    let captured = Captured::default();
    let (log, writer) = Log::start(Box::new(captured.clone()), Style { color: false }, 10);
    let options = Options {
        grace: Duration::from_secs(5),
        boot_timeout,
        ..Options::default()
    };
    let (handle, task) = Supervisor::start(
        Arc::new(app.plan.clone()),
        app.runtime.clone(),
        log,
        options,
    );
    let done = async move {
        let outcome = task.await.unwrap();
        writer.finish();
        // The app's directories last as long as the formation.
        drop(app);
        outcome
    };
    (handle, captured, done)
}

/// Waits (60 s at most) until the formation is in `phase`.
async fn reaches(handle: &Handle, phase: Phase) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.phase() != phase {
        assert!(
            Instant::now() < deadline,
            "the formation never reached {phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_given_up_leaves_and_the_log_says_so() {
    let (handle, log, done) = formation("exit 3", Duration::from_secs(60));
    reaches(&handle, Phase::Running).await;
    let error = handle
        .boot("web", None, IfItFails::GiveUp)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "web.1 exited with code 3 before it was ready"
    );
    assert!(handle.snapshot().instances.is_empty());
    log.wait_for("web.1 exited with code 3 before it was ready; not restarting it")
        .await;
    assert!(
        !log.text().contains("restarting web.1 in"),
        "{}",
        log.text()
    );

    handle.stop();
    reaches(&handle, Phase::Stopping).await;
    let error = handle
        .boot("web", None, IfItFails::GiveUp)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "the formation is stopping");
    assert_eq!(done.await, Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_killed_at_its_boot_timeout_is_said_to_be() {
    let (handle, log, done) = formation("exec sleep 60", Duration::from_millis(300));
    reaches(&handle, Phase::Running).await;
    let error = handle
        .boot("web", None, IfItFails::GiveUp)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "web.1 was not ready within 300 ms (`--boot-timeout`), so it was killed"
    );
    assert!(handle.snapshot().instances.is_empty());
    assert!(
        !log.text().contains("restarting web.1 in"),
        "{}",
        log.text()
    );
    handle.stop();
    assert_eq!(done.await, Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_that_may_restart_does() {
    let (handle, log, done) = formation("exit 3", Duration::from_secs(60));
    reaches(&handle, Phase::Running).await;
    let error = handle
        .boot("web", Some(2), IfItFails::Restart)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "web.2 exited with code 3 before it was ready"
    );
    log.wait_for("restarting web.2 in 100 ms").await;
    assert!(
        handle
            .snapshot()
            .instances
            .iter()
            .any(|i| i.name.to_string() == "web.2"),
        "web.2 stays in the formation"
    );
    handle.stop();
    assert_eq!(done.await, Outcome::Stopped);
}
