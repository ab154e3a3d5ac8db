//! The pipeline: a stream through the hashers into a scratch file, its errors, a cancel, and a
//! download from a loopback server.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use digest_app::fetch::{AddressClass, FetchError, FetchPolicy, Fetcher};
use digest_app::inspect::{FileType, Inspector};
use digest_app::pipeline::{
    PipelineError, Progress, Stages, digest_stream, digest_url, digest_url_measured,
};
use futures_core::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use support::generated;

/// Tests that count the pipeline's threads must not see another test's threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A stream of prepared items.
struct Items<E>(VecDeque<Result<Bytes, E>>);

impl<E> Stream for Items<E> {
    type Item = Result<Bytes, E>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.get_mut().0.pop_front())
    }
}

impl<E> Unpin for Items<E> {}

/// A stream fed from a channel, for tests that pace it.
struct Channel(mpsc::Receiver<Result<Bytes, Infallible>>);

impl Stream for Channel {
    type Item = Result<Bytes, Infallible>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx)
    }
}

fn chunked(data: &[u8], sizes: &[usize]) -> Items<Infallible> {
    let mut items = VecDeque::new();
    let mut rest = data;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).min(rest.len());
        items.push_back(Ok(Bytes::copy_from_slice(&rest[..size])));
        rest = &rest[size..];
    }
    Items(items)
}

/// Names of this process's threads that belong to the pipeline.
fn pipeline_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm"))
            && name.starts_with("digest-")
        {
            names.push(name.trim().to_owned());
        }
    }
    names.sort();
    names
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 60 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stream_in_odd_chunks_is_written_and_reported_like_one_shot_hashing() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("upload");
    let data = generated(3 * 1024 * 1024 + 5, 7);
    let mut seen = Vec::new();
    let report = digest_stream(
        chunked(&data, &[1, 65_536, 4099, 300_001]),
        &dest,
        u64::MAX,
        |done| seen.push(done),
    )
    .await
    .unwrap();
    assert_eq!(report, Inspector::inspect(&data));
    assert_eq!(report.file_type, FileType::Binary);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(seen.last(), Some(&(data.len() as u64)));
    wait_for("the pipeline threads to end", || {
        pipeline_threads().is_empty()
    })
    .await;
}

#[tokio::test]
async fn text_and_empty_input() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("text");
    let text = "één\ntwee\ndrie".repeat(10_000);
    let report = digest_stream(chunked(text.as_bytes(), &[7]), &dest, u64::MAX, |_| {})
        .await
        .unwrap();
    assert_eq!(report, Inspector::inspect(text.as_bytes()));
    assert_eq!(report.text.unwrap().lines, 20_001);

    let report = digest_stream(Items::<Infallible>(VecDeque::new()), &dest, 0, |_| {})
        .await
        .unwrap();
    assert_eq!(report.size, 0);
    assert_eq!(report.file_type, FileType::Empty);
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 0);
}

#[tokio::test]
async fn the_size_limit_stops_the_stream_and_removes_the_file() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big");
    let data = vec![7u8; 10_000];
    let exact = digest_stream(chunked(&data, &[1000]), &dest, 10_000, |_| {}).await;
    assert_eq!(exact.unwrap().size, 10_000);

    let error = digest_stream(chunked(&data, &[1000]), &dest, 9_999, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, PipelineError::TooLarge { limit: 9_999 }));
    assert_eq!(
        error.to_string(),
        "the file is larger than the limit of 9999 bytes"
    );
    assert!(!error.is_retryable());
    assert!(!dest.exists());
    wait_for("the pipeline threads to end", || {
        pipeline_threads().is_empty()
    })
    .await;
}

#[tokio::test]
async fn an_input_error_is_reported_and_the_file_removed() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("broken");
    let items = Items(VecDeque::from([
        Ok(Bytes::from_static(b"some bytes")),
        Err("connection reset by peer"),
    ]));
    let error = digest_stream(items, &dest, u64::MAX, |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "reading the upload failed: connection reset by peer"
    );
    assert!(!dest.exists());
    wait_for("the pipeline threads to end", || {
        pipeline_threads().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_scratch_file_that_cannot_be_written_is_named() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("missing-directory").join("file");
    let error = digest_stream(chunked(b"abc", &[1]), &dest, u64::MAX, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, PipelineError::Scratch { .. }), "{error:?}");
    assert!(error.to_string().contains("missing-directory"), "{error}");

    // A full disk: writes to /dev/full fail, and the device is not removed.
    let full = Path::new("/dev/full");
    let is_device = std::fs::metadata(full).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if !is_device {
        eprintln!("NOT RUN: the full-disk case needs /dev/full");
        return;
    }
    // Several blocks, so that the writer fails while the stream still has blocks to send.
    let data = generated(8 << 20, 7);
    let error = digest_stream(chunked(&data, &[65_536]), full, u64::MAX, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, PipelineError::Scratch { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(full.exists());
    wait_for("the pipeline threads to end", || {
        pipeline_threads().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_dropped_pipeline_leaves_no_thread_behind() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cancelled");
    let (sender, receiver) = mpsc::channel(4);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let pipeline = digest_stream(Channel(receiver), &dest, u64::MAX, move |done| {
        let _ = progress_tx.send(done);
    });
    tokio::select! {
        result = pipeline => panic!("the pipeline ended on its own: {result:?}"),
        () = async {
            // More than two blocks, so that whole blocks are in the threads' queues when the
            // pipeline is dropped.
            for _ in 0..30 {
                sender.send(Ok(Bytes::from(vec![1u8; 100_000]))).await.unwrap();
            }
            while progress_rx.recv().await != Some(3_000_000) {}
            // A thread names itself once it runs, which may be after its queue filled.
            wait_for("the three pipeline threads", || {
                pipeline_threads() == ["digest-blake3", "digest-sha256", "digest-write"]
            })
            .await;
        } => {}
    }
    // The pipeline future is dropped here, with its stream still open.
    wait_for("the pipeline threads to end after a cancel", || {
        pipeline_threads().is_empty()
    })
    .await;
    // The partial file stays for the caller to remove.
    assert!(dest.exists());
    drop(sender);
}

async fn serve_once_per_connection(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = socket.write_all(header.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{address}/file.bin")
}

#[tokio::test]
async fn the_stages_count_blocks_and_each_threads_cpu_within_the_runs_time() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("download");
    let data = generated(8 * 1024 * 1024 + 3, 11);
    let url = serve_once_per_connection(data.clone()).await;
    let fetcher = Fetcher::new(FetchPolicy {
        allow_loopback: true,
        timeout: Duration::from_secs(60),
        ..FetchPolicy::default()
    })
    .unwrap();
    let mut stages = Stages::default();
    let started = std::time::Instant::now();
    let report = digest_url_measured(&fetcher, &url, &dest, |_| {}, &mut stages)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report, Inspector::inspect(&data));
    // Eight whole blocks and the 3 bytes after them.
    assert_eq!(stages.blocks, 9, "{stages:?}");
    assert!(stages.chunks >= 1 && stages.writes >= 1, "{stages:?}");
    // Every thread worked, and no thread can have used more CPU, or been busy and waiting
    // for longer, than the run lasted: the threads start and end within it.
    for cpu in [stages.sha256_cpu, stages.blake3_cpu, stages.write_cpu] {
        assert!(
            cpu > Duration::ZERO && cpu <= elapsed,
            "{stages:?} in {elapsed:?}"
        );
    }
    assert!(stages.sha256 > Duration::ZERO, "{stages:?}");
    assert!(
        stages.sha256 + stages.sha256_wait <= elapsed,
        "{stages:?} in {elapsed:?}"
    );
}

#[tokio::test]
async fn digest_url_downloads_hashes_and_reports_progress() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("download");
    let data = generated(2 * 1024 * 1024 + 3, 7);
    let url = serve_once_per_connection(data.clone()).await;
    let fetcher = Fetcher::new(FetchPolicy {
        allow_loopback: true,
        timeout: Duration::from_secs(60),
        ..FetchPolicy::default()
    })
    .unwrap();
    let mut seen = Vec::new();
    let report = digest_url(&fetcher, &url, &dest, |progress| seen.push(progress))
        .await
        .unwrap();
    assert_eq!(report, Inspector::inspect(&data));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let total = Some(data.len() as u64);
    assert_eq!(seen.first(), Some(&Progress { done: 0, total }));
    assert_eq!(
        seen.last(),
        Some(&Progress {
            done: data.len() as u64,
            total
        })
    );

    // The fetcher's limits apply, and refused addresses create no file.
    let small = Fetcher::new(FetchPolicy {
        max_bytes: 1024,
        ..fetcher.policy().clone()
    })
    .unwrap();
    let error = digest_url(&small, &url, &dest, |_| {}).await.unwrap_err();
    assert!(
        matches!(error, PipelineError::TooLarge { limit: 1024 }),
        "{error:?}"
    );

    let strict = Fetcher::new(FetchPolicy::default()).unwrap();
    let other = dir.path().join("never");
    let error = digest_url(&strict, &url, &other, |_| {}).await.unwrap_err();
    assert!(
        matches!(
            error,
            PipelineError::Fetch(FetchError::Forbidden {
                class: AddressClass::Loopback,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(!other.exists());
}

mod chunk_boundaries {
    //! The pipeline gathers chunks into 1 MiB blocks and writes whole blocks with direct I/O
    //! (4 KiB aligned) and the rest as it comes: wherever the stream's chunks begin and end,
    //! the digests and the file must be those of the whole input.

    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    const MIB: usize = 1 << 20;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Chunk sizes around the edges that matter (one byte, the 4 KiB alignment, a block)
    /// and anywhere in between.
    fn chunk_size() -> impl Strategy<Value = usize> {
        prop_oneof![
            1..=64usize,
            4090..=4102usize,
            MIB - 3..=MIB + 3,
            1..=300_000usize,
        ]
    }

    /// Lengths from empty to a little over three blocks, with the block edges near.
    fn length() -> impl Strategy<Value = usize> {
        prop_oneof![
            0..=10_000usize,
            MIB - 5000..=MIB + 5000,
            3 * MIB - 10..=3 * MIB + 4200,
            0..=3 * MIB + 5000,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn digests_and_file_match_the_whole_input(
            len in length(),
            sizes in prop::collection::vec(chunk_size(), 1..8),
            seed in any::<u64>(),
        ) {
            let _serial = SERIAL.blocking_lock();
            let data = generated(len, seed);
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("file");
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let report = runtime
                .block_on(digest_stream(chunked(&data, &sizes), &dest, u64::MAX, |_| {}))
                .unwrap();
            prop_assert_eq!(report.size, len as u64);
            prop_assert_eq!(&report.sha256, &hex(&sha2::Sha256::digest(&data)));
            prop_assert_eq!(&report.blake3, &hex(blake3::hash(&data).as_bytes()));
            let written = std::fs::read(&dest).unwrap();
            prop_assert!(written == data, "the scratch file differs from the input");
        }
    }
}
