//! digest in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright
//! (`tests/browser/journey.mjs`) against digest run by the real `shoal` from its Procfile as
//! `web=2,worker=2` on the SQLite default. The browser signs up, signs out, is refused a wrong
//! password, signs in, submits a URL, watches the job page's progress bar part-way, reads the
//! report the page's script fills in, finds the job in "my files", uploads a file and reads
//! its report, and signs out; any script error or refused resource in the browser fails it.
//!
//! The download is served by a local server that sends half of the file and holds back the
//! rest until the script has seen the bar part-way (or for 60 s at most): the bar is seen in
//! progress however fast or slow the machine is, with no sleeps.
//!
//! `scripts/browser.sh` (sourced by `scripts/test`) installs Chromium and playwright-core and
//! sets `SHOAL_TEST_CHROMIUM` and `SHOAL_TEST_PLAYWRIGHT_DIR`; without them the test says it
//! did not run. Screenshots (`progress.png`, `report.png`, and `failure.png` when the browser
//! fails) are kept in a temporary directory, named on failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{DEADLINE, FileServer, Formation, blake3_hex, noise, sha256_hex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Where the browser and its driver are, from `scripts/browser.sh`.
struct Browser {
    chromium: String,
    playwright_dir: String,
}

impl Browser {
    fn from_env(test: &str) -> Option<Browser> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("SHOAL_TEST_CHROMIUM"), var("SHOAL_TEST_PLAYWRIGHT_DIR")) {
            (Some(chromium), Some(playwright_dir)) => Some(Browser {
                chromium,
                playwright_dir,
            }),
            _ => {
                support::not_run(
                    test,
                    "`SHOAL_TEST_CHROMIUM` / `SHOAL_TEST_PLAYWRIGHT_DIR` are not set \
                     (`source scripts/browser.sh` installs Chromium and Playwright and sets them)",
                );
                None
            }
        }
    }
}

/// The screenshots' directory: removed when the test passes, kept (and named) when it fails.
struct Artifacts(Option<tempfile::TempDir>);

impl Artifacts {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            let kept = dir.keep();
            eprintln!("screenshots of the browser test are in {}", kept.display());
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/journey.mjs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_submits_watches_the_progress_bar_and_reads_the_report() {
    let test = "a_browser_signs_in_submits_watches_the_progress_bar_and_reads_the_report";
    let Some(browser) = Browser::from_env(test) else {
        return;
    };
    let artifacts = Artifacts(Some(tempfile::tempdir().expect("temp dir")));

    // 4 MiB of noise for the worker to download, of which the server first sends half.
    let download = noise(4 << 20, 29);
    let (server, release) = FileServer::start_held(download.clone(), download.len() / 2).await;
    // A text file to upload through the form.
    let upload: String = (1..=3_000)
        .map(|i| format!("{i}: crème brûlée\n"))
        .collect();
    let upload_path = artifacts.path().join("menu.txt");
    std::fs::write(&upload_path, &upload).expect("write the file to upload");

    let data = tempfile::tempdir().expect("temp dir");
    let formation = Formation::start(
        "web=2,worker=2",
        &[
            ("XDG_DATA_HOME", data.path().to_str().unwrap()),
            ("DIGEST_ALLOW_LOOPBACK", "1"),
        ],
    )
    .await;

    let user = format!("grace-{}", support::unique());
    let mut node = tokio::process::Command::new("node")
        .arg(script())
        .env("SHOAL_TEST_CHROMIUM", &browser.chromium)
        .env("SHOAL_TEST_PLAYWRIGHT_DIR", &browser.playwright_dir)
        .env("DIGEST_BASE_URL", formation.base())
        .env("DIGEST_FILE_URL", server.url("/big.bin"))
        .env("DIGEST_UPLOAD", &upload_path)
        .env("DIGEST_USER", &user)
        .env("DIGEST_ARTIFACTS", artifacts.path())
        // Chromium's profile and Playwright's temporary files go with the test's directory.
        .env("TMPDIR", artifacts.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `node` (Node.js 20 or later is needed): {e}"));
    let mut stderr = node.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    // Every step of the script has its own 60 s limit; this bounds the whole run.
    let deadline = Instant::now() + DEADLINE * 5;
    let mut stdout = BufReader::new(node.stdout.take().unwrap()).lines();
    let (mut progress, mut result, mut printed) = (None, None, Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match tokio::time::timeout(left, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None) | Err(_)) => break,
            Err(_) => {
                let _ = node.start_kill();
                panic!(
                    "the browser journey did not end within {:?}; it printed:\n{}\n\n{}",
                    DEADLINE * 5,
                    printed.join("\n"),
                    formation.output()
                );
            }
        };
        printed.push(line.clone());
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match event["event"].as_str() {
            Some("progress") => {
                progress = Some(event);
                // The page showed the download part-way: let the server send the rest.
                release.release();
            }
            Some("result") => result = Some(event),
            _ => {}
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(10), node.wait())
        .await
        .expect("node exits once its output has ended")
        .expect("wait for node");
    let stderr = stderr.await.unwrap();
    assert!(
        status.success(),
        "the browser journey failed ({status}):\n{stderr}\nit printed:\n{}\n\nshoal's output:\n{}",
        printed.join("\n"),
        formation.output()
    );
    let result = result.unwrap_or_else(|| {
        panic!(
            "the browser journey printed no result:\n{}\n{stderr}",
            printed.join("\n")
        )
    });

    // The bar was seen part-way, by the page's script: running, between 0 and 100 %, and at
    // most the half the server had sent.
    let progress = progress.expect("a progress event before the result");
    let position = progress["position"].as_f64().unwrap();
    assert!(position > 0.0 && position <= 0.5, "{progress}");
    assert_eq!(progress["state_text"], "running", "{progress}");
    assert_eq!(progress["max"].as_f64(), Some(download.len() as f64));
    assert!(
        progress["text"].as_str().unwrap().ends_with(" of 4.0 MiB"),
        "{progress}"
    );

    // The report the page's script filled in, without a reload.
    let url_job = &result["url_job"];
    assert_eq!(url_job["reloaded"], false, "{url_job}");
    assert_eq!(url_job["state"], "done", "{url_job}");
    assert_eq!(url_job["state_text"], "done", "{url_job}");
    assert_eq!(url_job["state_class"], "state-done", "{url_job}");
    assert_eq!(url_job["attempts"], "1", "{url_job}");
    assert_eq!(url_job["source"], server.url("/big.bin"), "{url_job}");
    assert_eq!(url_job["progress_position"], 1.0, "{url_job}");
    assert_eq!(url_job["progress_text"], "4.0 MiB of 4.0 MiB", "{url_job}");
    assert_eq!(url_job["error_hidden"], true, "{url_job}");
    check_report(url_job, &download);
    assert_eq!(url_job["lines"], "not text", "{url_job}");
    assert_eq!(server.requests(), 1);

    let listed = &result["listed"];
    assert_eq!(listed["state"], "done", "{listed}");
    assert_eq!(
        listed["link"],
        format!("/jobs/{}", url_job["id"]),
        "{listed}"
    );

    // The upload, digested within its request.
    let upload_job = &result["upload_job"];
    assert_eq!(upload_job["state"], "done", "{upload_job}");
    assert_eq!(upload_job["source"], "menu.txt", "{upload_job}");
    check_report(upload_job, upload.as_bytes());
    assert_eq!(upload_job["lines"], "3000", "{upload_job}");
    assert_eq!(upload_job["encoding"], "UTF-8", "{upload_job}");

    let output = formation.output();
    assert!(!output.contains("panicked"), "{output}");
    assert_eq!(formation.stop().await, Some(143));
    drop(artifacts);
}

/// The report fields as the page shows them, against the digests of `data` computed here.
fn check_report(shown: &Value, data: &[u8]) {
    let size = shown["size"].as_str().unwrap_or_default();
    assert!(
        size.starts_with(&format!("{} bytes (", data.len())),
        "size `{size}`: {shown}"
    );
    assert_eq!(shown["sha256"], sha256_hex(data), "{shown}");
    assert_eq!(shown["blake3"], blake3_hex(data), "{shown}");
    assert_eq!(shown["report_hidden"], false, "{shown}");
}
