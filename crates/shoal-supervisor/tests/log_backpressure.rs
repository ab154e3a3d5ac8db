//! The log against a stdout nobody reads: instance output waits and is all written, access lines
//! are dropped and counted, shoal's own lines queue up to a bound; no task or buffer per line.

use std::io::Read;
use std::time::{Duration, Instant};

use shoal_supervisor::output::OVERFLOW;
use shoal_supervisor::{Log, Style};

/// Far more than the pipe (64 KiB), one batch (64 KiB) and the channel (256 lines) hold.
const ACCESS_LINES: usize = 50_000;
const INSTANCE_LINES: usize = 2_000;

/// A log writing into a pipe that is not read until `drain` is called.
fn stalled_log() -> (Log, shoal_supervisor::LogWriter, std::io::PipeReader) {
    let (reader, writer) = std::io::pipe().unwrap();
    let (log, log_writer) = Log::start(Box::new(writer), Style { color: false }, 6);
    (log, log_writer, reader)
}

/// Reads the pipe to its end (once every [`Log`] is gone) on a thread of its own.
fn drain(mut reader: std::io::PipeReader) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text
    })
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (60 s at most) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The count `N` of every `system | dropped N <what>…` notice, summed.
fn dropped(text: &str, what: &str) -> usize {
    text.lines()
        .filter_map(|line| line.split_once("system | dropped ")?.1.split_once(' '))
        .filter(|(_, rest)| rest.starts_with(what))
        .map(|(count, _)| count.parse::<usize>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_are_dropped_and_counted_and_instance_output_is_all_written() {
    let (log, writer, reader) = stalled_log();
    let web = log.source("web.1".into(), 0);
    let router = log.named("router");

    // The instance's reader waits for room; it must not be dropped or overtaken.
    let instance = {
        let log = log.clone();
        let web = web.clone();
        tokio::spawn(async move {
            for n in 0..INSTANCE_LINES {
                log.lines(&web, format!("instance line {n}\n").into_bytes())
                    .await;
            }
        })
    };
    let path = "x".repeat(200);
    for n in 0..ACCESS_LINES {
        log.access(&router, format!("method=GET path=/{path} n={n}"));
    }
    // Nothing is kept per dropped line: no task, and the instance's one task is all there is.
    assert!(alive_tasks() <= 2, "{} tasks alive", alive_tasks());

    let text = drain(reader);
    instance.await.unwrap();
    drop((log, web, router));
    writer.finish();
    let text = text.join().unwrap();

    let written = text.lines().filter(|l| l.contains("method=GET")).count();
    let dropped = dropped(&text, "access line");
    assert!(dropped > 0, "nothing was dropped:\n{text}");
    assert_eq!(written + dropped, ACCESS_LINES);
    let instance: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("web.1  | "))
        .map(|(_, line)| line)
        .collect();
    let expected: Vec<String> = (0..INSTANCE_LINES)
        .map(|n| format!("instance line {n}"))
        .collect();
    assert_eq!(instance, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_lines_queue_in_order_up_to_a_bound() {
    let (log, writer, reader) = stalled_log();
    let chaos = log.named("chaos");
    let lines = 20 * OVERFLOW;
    for n in 0..lines {
        log.line_now(&chaos, format!("own line {n}"));
    }
    // One task forwards the queue (it used to be a task for every line).
    assert!(alive_tasks() <= 1, "{} tasks alive", alive_tasks());

    let text = drain(reader);
    // The forwarding task ends once the queue is in the channel.
    wait_until("the queue to be forwarded", || alive_tasks() == 0).await;
    drop((log, chaos));
    writer.finish();
    let text = text.join().unwrap();

    let written: Vec<usize> = text
        .lines()
        .filter_map(|l| l.split_once("chaos  | own line "))
        .map(|(_, n)| n.parse().unwrap())
        .collect();
    assert!(written.is_sorted(), "own lines out of order");
    assert!(written.len() < lines, "nothing was dropped");
    assert_eq!(written.len() + dropped(&text, "of shoal's own line"), lines);
}

#[tokio::test]
async fn nothing_is_dropped_when_the_output_keeps_up() {
    let (log, writer, reader) = stalled_log();
    let text = drain(reader);
    let router = log.named("router");
    for n in 0..100 {
        log.access(&router, format!("n={n}"));
    }
    drop((log, router));
    writer.finish();
    let text = text.join().unwrap();
    assert_eq!(text.lines().count(), 100, "{text}");
    assert!(!text.contains("dropped"));
}
