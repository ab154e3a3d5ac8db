//! `shoal verify` against the fixture apps of `crates/shoal-verify/fixtures` (Python and Node,
//! stateful and stateless), and against scenarios and apps it must refuse to judge.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{App, Output, shoal_bin};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shoal-verify/fixtures")
        .join(name)
}

/// `shoal verify -f FIXTURE/Procfile FIXTURE/scenario.http ARGS` with a private TMPDIR.
fn verify(name: &str, args: &[&str]) -> Output {
    let dir = fixture(name);
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(shoal_bin());
    command
        .arg("verify")
        .arg("-f")
        .arg(dir.join("Procfile"))
        .args(args)
        .env("TMPDIR", tmp.path())
        .env("NO_COLOR", "1")
        .env_remove("PORT");
    if !args
        .iter()
        .any(|a| a.ends_with(".http") || a.ends_with(".har"))
    {
        command.arg(dir.join("scenario.http"));
    }
    let output = command.output().expect("run shoal verify");
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_verdict(output: &Output, stateful: bool) {
    let (code, first) = if stateful {
        (1, "shoal verify: STATEFUL")
    } else {
        (0, "shoal verify: stateless")
    };
    assert_eq!(
        output.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stdout.starts_with(first),
        "stdout:\n{}\nstderr:\n{}",
        output.stdout,
        output.stderr
    );
}

/// An env file for the Redis-backed fixtures, or `None` after saying the test did not run.
fn redis_env(test: &str) -> Option<(tempfile::TempDir, String)> {
    let Ok(url) = std::env::var("SHOAL_TEST_REDIS_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: {test}: `SHOAL_TEST_REDIS_URL` is not set (scripts/test sets it)"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("redis.env");
    let prefix = format!("shoal-verify-test:{test}:{}:", std::process::id());
    std::fs::write(&file, format!("REDIS_URL={url}\nKEY_PREFIX={prefix}\n")).unwrap();
    let file = file.display().to_string();
    Some((dir, file))
}

/// An env file naming a SQLite database at an absolute path, shared by every instance.
fn sqlite_env() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sqlite.env");
    std::fs::write(
        &file,
        format!("DATABASE_PATH={}\n", dir.path().join("app.db").display()),
    )
    .unwrap();
    let file = file.display().to_string();
    (dir, file)
}

#[test]
fn a_counter_in_process_memory_is_stateful() {
    let output = verify("counter-memory", &["--seed", "1"]);
    assert_verdict(&output, true);
    assert!(
        output.stdout.contains("body $.visits: 2 → 1"),
        "{}",
        output.stdout
    );
    assert!(
        output
            .stdout
            .contains("the answer depended on which process served it")
            && output.stdout.contains("most likely kept in process memory"),
        "{}",
        output.stdout
    );
    // Progress went to stderr, phase by phase.
    for phase in [
        "baseline 1/2",
        "baseline 2/2",
        "round 1/3",
        "round 3/3 done",
    ] {
        assert!(output.stderr.contains(phase), "{}", output.stderr);
    }
}

#[test]
fn the_same_counter_in_redis_is_stateless() {
    let Some((_dir, env)) = redis_env("counter") else {
        return;
    };
    assert_verdict(
        &verify("counter-redis", &["-e", &env, "--seed", "1"]),
        false,
    );
}

#[test]
fn sessions_in_process_memory_are_stateful() {
    let output = verify("sessions-memory", &["--seed", "2"]);
    assert_verdict(&output, true);
    assert!(
        output
            .stdout
            .contains("-<p>Signed in as alice-{{generated#1}}</p>")
            && output.stdout.contains("+<p>Not signed in</p>"),
        "{}",
        output.stdout
    );
}

/// Sessions as files in the temporary directory, as Django's file sessions are: verify looks
/// into each instance's scratch directory between requests and before a restart empties it,
/// so the reading names the session file instead of guessing process memory.
#[test]
fn sessions_as_files_in_the_temporary_directory_are_stateful_and_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = verify(
        "sessions-scratch-files",
        &["--seed", "2", "--json", json.to_str().unwrap()],
    );
    assert_verdict(&output, true);
    assert!(
        output
            .stdout
            .contains("-<p>Signed in as alice-{{generated#1}}</p>")
            && output.stdout.contains("+<p>Not signed in</p>"),
        "{}",
        output.stdout
    );
    // Round 1: web.1 signed the visitor in (#2) and web.3 answered #3; the visitor signed
    // out at web.1 later, which deleted the file.
    assert!(
        output.stdout.contains("web.1 wrote `sessions/")
            && output.stdout.contains(
                "in its temporary directory, emptied at restart: state kept on local disk"
            ),
        "{}",
        output.stdout
    );
    assert!(
        !output.stdout.contains("most likely kept in process memory"),
        "{}",
        output.stdout
    );
    let report = json_report(&json);
    let scratch = report["scratch_writes"].as_array().unwrap();
    assert!(
        scratch.iter().any(|w| w["run"] == "round 1"
            && w["instance"] == "web.1"
            && w["path"].as_str().unwrap().starts_with("sessions/")
            && w["change"] == "created"),
        "{report}"
    );
    // Nothing was written in the copies of the app directory.
    assert_eq!(report["local_writes"], serde_json::json!([]));
}

#[test]
fn the_same_sessions_in_redis_are_stateless() {
    let Some((_dir, env)) = redis_env("sessions") else {
        return;
    };
    assert_verdict(
        &verify("sessions-redis", &["-e", &env, "--seed", "2"]),
        false,
    );
}

#[test]
fn a_cache_in_a_local_file_is_stateful_and_the_file_is_named() {
    let output = verify("cache-local-file", &["--seed", "3"]);
    assert_verdict(&output, true);
    assert!(
        output.stdout.contains("status: 200 → 404"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("created `cache/r-")
            && output.stdout.contains("state kept on local disk"),
        "{}",
        output.stdout
    );
    // Instances wrote into private copies, never into the app directory itself.
    assert!(!fixture("cache-local-file").join("cache").exists());
}

#[test]
fn the_same_cache_in_sqlite_at_an_absolute_path_is_stateless() {
    let (_dir, env) = sqlite_env();
    assert_verdict(&verify("cache-sqlite", &["-e", &env, "--seed", "3"]), false);
}

#[test]
fn uploads_on_local_disk_are_stateful() {
    let output = verify("uploads-local-disk", &["--seed", "4"]);
    assert_verdict(&output, true);
    assert!(
        output
            .stdout
            .contains("-Hello from a file uploaded by shoal verify.")
            && output.stdout.contains("created `uploads/"),
        "{}",
        output.stdout
    );
    assert!(!fixture("uploads-local-disk").join("uploads").exists());
}

#[test]
fn uploads_in_sqlite_digested_by_a_worker_are_stateless() {
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    let output = verify(
        "uploads-sqlite",
        &["-e", &env, "--seed", "4", "--json", json.to_str().unwrap()],
    );
    assert_verdict(&output, false);
    // The report page was read once the worker had digested the upload.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let requests = &report["scenarios"][0]["requests"];
    assert_eq!(requests[0]["baseline_status"], 303);
    assert_eq!(requests[1]["baseline_status"], 200);
}

/// The JSON report of a run that wrote one with `--json FILE`.
fn json_report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The shuffled rounds run two workers by default and restart them too; `--seed 9` plans
/// both of them restarted between the two jobs in round 1 (pinned by the schedule's
/// `seed_9_restarts_both_workers_between_the_fixture_jobs`), so the second job cannot be
/// served from a worker's memory there: one round is enough for a certain verdict.
#[test]
fn a_worker_caching_results_in_memory_is_stateful_once_restarts_land_between_jobs() {
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    let output = verify(
        "worker-cache-memory",
        &[
            "-e",
            &env,
            "--seed",
            "9",
            "--rounds",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_verdict(&output, true);
    assert!(
        output.stdout.contains("over 3 web and 2 worker instances"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("body $.words: 3 → 5"),
        "{}",
        output.stdout
    );
    assert!(
        output
            .stdout
            .contains("reading: the answer changed after worker.")
            && output
                .stdout
                .contains("the job's result depended on something worker."),
        "{}",
        output.stdout
    );
    let report = json_report(&json);
    assert_eq!(
        report["formation"],
        serde_json::json!([{"type": "web", "instances": 3}, {"type": "worker", "instances": 2}])
    );
    // Only the second job's result differed, and the workers are named as the cause.
    let requests = report["scenarios"][0]["requests"].as_array().unwrap();
    for (i, request) in requests.iter().enumerate() {
        let divergences = request["divergences"].as_array().unwrap();
        assert_eq!(divergences.is_empty(), i != 5, "#{}: {request}", i + 1);
    }
    let round_1 = requests[5]["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["round"] == 1)
        .expect("a divergence in round 1");
    assert_eq!(round_1["cause"], "worker", "{round_1}");
    // The plan says which instance of which type was restarted before which request.
    let steps = report["schedule"][0].as_array().unwrap();
    for (step, instance) in [(3, 1), (4, 2)] {
        assert_eq!(steps[step]["worker_restart"]["type"], "worker");
        assert_eq!(steps[step]["worker_restart"]["instance"], instance);
    }
    assert!(report["worker_restarts"].as_u64().unwrap() >= 2);
}

#[test]
fn the_same_cache_in_the_database_is_stateless_with_workers_restarted_mid_job() {
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    let output = verify(
        "worker-cache-sqlite",
        &[
            "-e",
            &env,
            "--seed",
            "9",
            "--rounds",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_verdict(&output, false);
    let report = json_report(&json);
    // Workers were restarted between requests and while a job's result was polled for.
    assert!(report["worker_restarts"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["restarts_while_polling"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let while_polling = report["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|round| round.as_array().unwrap())
        .filter(|step| step["worker_restarts_while_polling"][0]["type"] == "worker")
        .count();
    assert!(while_polling >= 1, "{report}");
    // Both jobs were answered: the second one from the first version's cached digest.
    let requests = report["scenarios"][0]["requests"].as_array().unwrap();
    assert_eq!(requests[2]["baseline_status"], 200);
    assert_eq!(requests[5]["baseline_status"], 200);
}

#[test]
fn the_same_cache_in_redis_is_stateless_with_the_same_restarts() {
    let Some((_redis_dir, redis)) = redis_env("worker-cache") else {
        return;
    };
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    // The plan that finds the cache in worker memory (seed 9, both workers restarted between
    // the two jobs in round 1).
    let output = verify(
        "worker-cache-redis",
        &[
            "-e",
            &env,
            "-e",
            &redis,
            "--seed",
            "9",
            "--rounds",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_verdict(&output, false);
    let report = json_report(&json);
    let steps = report["schedule"][0].as_array().unwrap();
    for (step, instance) in [(3, 1), (4, 2)] {
        assert_eq!(
            steps[step]["worker_restart"]["instance"], instance,
            "{report}"
        );
    }
    // The second job's result came from the cache: the first version's digest.
    let requests = report["scenarios"][0]["requests"].as_array().unwrap();
    assert_eq!(requests[5]["baseline_status"], 200);
}

/// The claims of each job of the jobs fixtures' database (`tries`): a job claimed more than
/// once was resumed after its worker was restarted mid-job.
fn most_tries(database: &Path) -> u64 {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT max(tries) FROM jobs').fetchone()[0])",
        ])
        .arg(database)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "no tries in `{}`: {text} {}",
            database.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `--seed 9 --rounds 1`, with the default two workers: while the result is polled for, after
/// a first part is downloaded — mid-job — round 1 restarts one worker, and after the next
/// answer that shows the job not done, the other: whichever holds the job is restarted while
/// it runs. The plan and the restarts made are checked in each test's JSON report.
const MID_JOB: [&str; 4] = ["--seed", "9", "--rounds", "1"];

fn assert_restarted_mid_job(report: &serde_json::Value) {
    assert_eq!(
        report["formation"],
        serde_json::json!([{"type": "web", "instances": 3}, {"type": "worker", "instances": 2}]),
        "{report}"
    );
    // Both workers are planned while request #3 polls, one after the other.
    let planned: Vec<&serde_json::Value> =
        report["schedule"][0][2]["worker_restarts_while_polling"]
            .as_array()
            .expect("restarts planned while #3 polls")
            .iter()
            .map(|r| &r["instance"])
            .collect();
    assert!(planned == [1, 2] || planned == [2, 1], "{report}");
    // Both were made: the first after the first try, the second after a later one (the job
    // was still in progress after the first restart).
    let made: Vec<&serde_json::Value> = report["restarts_made"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["request"] == 3 && r["after_try"].is_u64())
        .collect();
    assert_eq!(made.len(), 2, "{report}");
    assert_eq!(made[0]["after_try"], 1, "{report}");
    assert!(made[1]["after_try"].as_u64() > Some(1), "{report}");
    assert_eq!(report["restarts_while_polling"], 2, "{report}");
}

#[test]
fn a_worker_keeping_a_jobs_parts_on_local_disk_between_tries_is_stateful_when_killed_mid_job() {
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    let mut args = vec!["-e", &env, "--json", json.to_str().unwrap()];
    args.extend(MID_JOB);
    let output = verify("worker-retry-local-disk", &args);
    assert_verdict(&output, true);
    let report = json_report(&json);
    assert_restarted_mid_job(&report);
    assert!(most_tries(&dir.path().join("app.db")) >= 2, "{report}");
    // The job was resumed without the parts downloaded before the restart.
    assert!(
        output.stdout.contains("body $.words: 9 → 6")
            || output.stdout.contains("body $.words: 9 → 3"),
        "{}",
        output.stdout
    );
    // The workers are named, and so is the file the parts were in.
    assert!(
        output
            .stdout
            .contains("reading: the answer changed after worker.")
            && output.stdout.contains(" wrote `jobs/")
            && output.stdout.contains(".part` ")
            && output
                .stdout
                .contains("emptied at restart: state kept on local disk"),
        "{}",
        output.stdout
    );
    let divergence = &report["scenarios"][0]["requests"][2]["divergences"][0];
    assert_eq!(divergence["cause"], "worker", "{report}");
}

#[test]
fn the_same_parts_in_the_database_are_stateless_when_killed_mid_job() {
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    let mut args = vec!["-e", &env, "--json", json.to_str().unwrap()];
    args.extend(MID_JOB);
    assert_verdict(&verify("worker-retry-sqlite", &args), false);
    let report = json_report(&json);
    assert_restarted_mid_job(&report);
    // The job was resumed from its checkpoint, and came out whole.
    assert!(most_tries(&dir.path().join("app.db")) >= 2, "{report}");
    assert_eq!(
        report["scenarios"][0]["requests"][2]["baseline_status"],
        200
    );
}

#[test]
fn the_same_parts_in_redis_are_stateless_when_killed_mid_job() {
    let Some((_redis_dir, redis)) = redis_env("worker-retry") else {
        return;
    };
    let (dir, env) = sqlite_env();
    let json = dir.path().join("report.json");
    let mut args = vec!["-e", &env, "-e", &redis, "--json", json.to_str().unwrap()];
    args.extend(MID_JOB);
    assert_verdict(&verify("worker-retry-redis", &args), false);
    let report = json_report(&json);
    assert_restarted_mid_job(&report);
    assert!(most_tries(&dir.path().join("app.db")) >= 2, "{report}");
}

#[test]
fn a_static_site_is_stateless_from_an_http_file_and_from_a_har_file() {
    assert_verdict(&verify("static-site", &["--seed", "5"]), false);
    let har = fixture("static-site").join("scenario.har");
    let output = verify("static-site", &["--seed", "5", har.to_str().unwrap()]);
    assert_verdict(&output, false);
    assert!(
        output
            .stdout
            .contains("left out the requests to other hosts"),
        "{}",
        output.stdout
    );
}

#[test]
fn a_noisy_stateless_app_is_stateless_and_the_reports_are_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("verify.json");
    let junit = dir.path().join("verify.xml");
    let output = verify(
        "noisy",
        &[
            "--seed",
            "6",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_verdict(&output, false);

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["version"], 1);
    assert_eq!(report["verdict"], "stateless");
    assert_eq!(report["seed"], 6);
    assert_eq!(report["rounds"], 3);
    assert_eq!(report["web_instances"], 3);
    let requests = report["scenarios"][0]["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 20);
    // The form post carried the captured CSRF token (303), the forged one did not (403).
    assert_eq!(requests[2]["baseline_status"], 303);
    assert_eq!(requests[11]["baseline_status"], 403);
    assert!(
        requests
            .iter()
            .all(|r| r["divergences"].as_array().unwrap().is_empty())
    );
    // Each request went to another instance than the one before, and instances restarted.
    for round in report["schedule"].as_array().unwrap() {
        let served: Vec<u64> = round
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["instance"].as_u64().unwrap())
            .collect();
        assert_eq!(served.len(), 20);
        assert!(served.windows(2).all(|w| w[0] != w[1]), "{served:?}");
    }
    assert!(report["restarts"].as_u64().unwrap() > 0);

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"shoal verify\" tests=\"20\" failures=\"0\""),
        "{xml}"
    );
    assert_well_formed_xml(&junit);
}

#[test]
fn a_stateful_app_fails_its_junit_test_cases() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("verify.xml");
    let output = verify(
        "counter-memory",
        &["--seed", "1", "--junit", junit.to_str().unwrap()],
    );
    assert_verdict(&output, true);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"4\" failures=\"3\""), "{xml}");
    assert!(
        xml.contains(
            "<failure type=\"stateful\" message=\"the answer depended on which process served it"
        ),
        "{xml}"
    );
    assert_well_formed_xml(&junit);
}

fn assert_well_formed_xml(path: &Path) {
    let checked = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])",
        ])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        checked.status.success(),
        "not well-formed XML: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// A scenario file `bad.http` with `text` next to a small app; `shoal verify` on it.
fn verify_scenario(app: &App, text: &str, args: &[&str]) -> Output {
    app.write("bad.http", text);
    let mut all = vec!["verify", "bad.http"];
    all.extend_from_slice(args);
    app.run(&all)
}

fn assert_no_verdict(output: &Output, message: &str) {
    assert_eq!(
        output.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stdout.is_empty(),
        "no report without a verdict: {}",
        output.stdout
    );
    assert!(
        output.stderr.contains(message),
        "expected `{message}` in:\n{}",
        output.stderr
    );
}

#[test]
fn bad_scenarios_are_refused_with_their_file_and_line() {
    let app = App::new("web: python3 -m http.server \"$PORT\" --bind 127.0.0.1\n");
    assert_no_verdict(
        &verify_scenario(&app, "GET /\nthis is not a header\n", &[]),
        "error: bad.http:2: expected a header `Name: value`, or an empty line before the body; found `this is not a header`",
    );
    assert_no_verdict(
        &verify_scenario(&app, "@base = /a\n\n###\nGET {{bsae}}/x\n", &[]),
        "error: bad.http:4: unknown variable `{{bsae}}` (did you mean `base`?)",
    );
    assert_no_verdict(
        &verify_scenario(&app, "###\nGET /a\n\n###\nGET http://example.com/x\n", &[]),
        "error: bad.http:5: `http://example.com` points at another host than the app under test",
    );
    assert_no_verdict(
        &verify_scenario(
            &app,
            "GET /\n\n###\nGET /{{later}}\n\n###\n# @capture later = body (x)\nGET /\n",
            &[],
        ),
        "error: bad.http:4: `{{later}}` is captured only later, by request #3",
    );
    assert_no_verdict(
        &verify_scenario(&app, "# @captur x = body y\nGET /\n", &[]),
        "error: bad.http:1: unknown directive `@captur`; did you mean `@capture`?",
    );
    assert_no_verdict(
        &app.run(&["verify", "missing.http"]),
        "error: cannot read the scenario `missing.http`",
    );
}

#[test]
fn a_capture_that_finds_nothing_in_the_baseline_is_a_scenario_error() {
    let app = App::new("web: python3 -m http.server \"$PORT\" --bind 127.0.0.1\n");
    app.write("index.html", "<p>no token here</p>\n");
    let output = verify_scenario(
        &app,
        "# @capture csrf = body name=\"csrf\" value=\"([^\"]+)\"\nGET /index.html\n\n###\nGET /?t={{csrf}}\n",
        &["--rounds", "1"],
    );
    assert_no_verdict(
        &output,
        "error: bad.http:1: `@capture csrf`: `name=\"csrf\" value=\"([^\"]+)\"` matches nothing in the body (status 200)",
    );
}

#[test]
fn an_app_that_never_becomes_ready_gets_no_verdict() {
    let app = App::new("web: echo booting; exec sleep 600\n");
    let output = verify_scenario(&app, "GET /\n", &["--boot-timeout", "1"]);
    assert_no_verdict(&output, "error: `web.1` did not become ready within 1 s");
    assert!(
        output.stderr.contains("web.1") && output.stderr.contains("| booting"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("no verdict"), "{}", output.stderr);
}

#[test]
fn an_app_that_keeps_crashing_gets_no_verdict() {
    let app = App::new("web: echo cannot start >&2; exit 3\n");
    let output = verify_scenario(&app, "GET /\n", &[]);
    assert_no_verdict(
        &output,
        "error: `web.1` exited 3 times without becoming ready (last: exited with code 3)",
    );
}

#[test]
fn a_procfile_without_web_gets_no_verdict() {
    let app = App::new("worker: sleep 600\n");
    let output = verify_scenario(&app, "GET /\n", &[]);
    assert_no_verdict(&output, "has no `web` process type");
}

/// A web app that keeps notes as files in `notes/` of its working directory (stateful): a
/// POST writes `notes/NAME`, deletes `seed.txt` and runs `more` (Python lines, indented for
/// the handler); a GET reads the note back, 404 when this instance has none.
fn notes_app(dir: &Path, more: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Procfile"), "web: python3 app.py\n").unwrap();
    std::fs::write(dir.join("seed.txt"), "as built\n").unwrap();
    let app = format!(
        r#"import http.server, os, shutil

class Notes(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        name = self.path.rsplit("/", 1)[-1]
        os.makedirs("notes", exist_ok=True)
        with open(os.path.join("notes", name), "w") as note:
            note.write(name)
        if os.path.exists("seed.txt"):
            os.remove("seed.txt"){more}
        self.answer(201, name)

    def do_GET(self):
        try:
            with open(os.path.join("notes", self.path.rsplit("/", 1)[-1])) as note:
                self.answer(200, note.read())
        except FileNotFoundError:
            self.answer(404, "no such note")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Notes).serve_forever()
"#
    );
    std::fs::write(dir.join("app.py"), app).unwrap();
    std::fs::write(
        dir.join("notes.http"),
        "@id = n-{{$guid}}\n\n###\nPOST /notes/{{id}}\n\n###\nGET /notes/{{id}}\n\n###\nGET /notes/{{id}}\n",
    )
    .unwrap();
}

/// `shoal verify --json FILE` of the notes app in `app`'s directory `sub`, with a TMPDIR of
/// its own that must be empty afterwards (no copy and no mount point left): the output and
/// the JSON report.
fn verify_notes(app: &App, sub: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("report.json");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let procfile = format!("{sub}/Procfile");
    let scenario = format!("{sub}/notes.http");
    let mut all = vec!["verify", "-f", &procfile, &scenario];
    all.extend_from_slice(&["--json", json.to_str().unwrap()]);
    all.extend_from_slice(args);
    let output = app.command(&all).env("TMPDIR", &work).output().unwrap();
    let output = Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}\n{output:?}");
    let report = json_report(&json);
    (output, report)
}

/// The local writes of a report, `(run, instance, change, path)` in order, with the notes'
/// random names as `n-*`.
fn local_writes(report: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let mut writes: Vec<(String, String, String, String)> = report["local_writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let path = w["path"].as_str().unwrap();
            let path = match path.split_once("/n-") {
                Some((dir, _)) => format!("{dir}/n-*"),
                None => path.to_owned(),
            };
            let field = |name: &str| w[name].as_str().unwrap().to_owned();
            (field("run"), field("instance"), field("change"), path)
        })
        .collect();
    writes.sort();
    writes
}

#[test]
fn copies_are_copy_on_write_and_plain_copies_find_the_same_writes_and_verdict() {
    let app = App::new("");
    notes_app(&app.path().join("app"), "");
    // `,` in the app directory's path: overlayfs cannot be given it, so the copies are plain.
    notes_app(&app.path().join("app,plain"), "");
    let (cow, cow_report) = verify_notes(&app, "app", &["--seed", "7"]);
    let (plain, plain_report) = verify_notes(&app, "app,plain", &["--seed", "7"]);
    for output in [&cow, &plain] {
        assert_verdict(output, true);
        assert!(
            output.stdout.contains("created `notes/n-")
                && output.stdout.contains("state kept on local disk"),
            "{}",
            output.stdout
        );
    }
    assert_eq!(
        cow_report["copies"],
        serde_json::json!({"how": "copy-on-write"})
    );
    assert!(
        cow.stdout.contains(", copy-on-write copies of the app, "),
        "{}",
        cow.stdout
    );
    assert_eq!(plain_report["copies"]["how"], "plain");
    let why = plain_report["copies"]["why"].as_str().unwrap();
    assert!(
        why.starts_with("overlayfs cannot be given the path"),
        "{why}"
    );
    assert!(
        plain.stdout.contains(", plain copies of the app, ")
            && plain.stdout.contains(&format!(
                "every instance ran in a plain copy of the app directory, as copy-on-write is not possible: {why}"
            )),
        "{}",
        plain.stdout
    );
    // The same writes were found in both: each note created, `seed.txt` deleted, by the same
    // instances (the same seed plans the same rounds).
    let writes = local_writes(&cow_report);
    assert_eq!(writes, local_writes(&plain_report));
    let changes: std::collections::BTreeSet<(&str, &str)> = writes
        .iter()
        .map(|(_, _, change, path)| (change.as_str(), path.as_str()))
        .collect();
    assert_eq!(
        changes.into_iter().collect::<Vec<_>>(),
        [("created", "notes/n-*"), ("deleted", "seed.txt")]
    );
    assert!(writes.iter().any(|(run, ..)| run == "baseline 1"));
    assert!(writes.iter().any(|(run, ..)| run == "round 3"));
    // Nothing reached the app directories themselves.
    for sub in ["app", "app,plain"] {
        assert!(app.path().join(sub).join("seed.txt").exists());
        assert!(!app.path().join(sub).join("notes").exists());
    }
}

#[test]
fn file_names_in_the_report_are_escaped_so_that_they_neither_fake_lines_nor_steer_the_terminal() {
    let app = App::new("");
    // Two more files, whose names hold a newline and an escape sequence, and a byte that is
    // not UTF-8.
    let odd = r#"
        open(b"notes/" + name.encode() + b"\nfake | line\x1b[2J", "w").close()
        open(b"notes/x\xffy", "w").close()"#;
    notes_app(&app.path().join("app"), odd);
    let (output, report) = verify_notes(&app, "app", &["--seed", "7"]);
    assert_verdict(&output, true);
    for name in [r"\nfake | line\u{1b}[2J`", r"notes/x\xffy`"] {
        assert!(output.stdout.contains(name), "{name}: {}", output.stdout);
    }
    assert!(!output.stdout.contains('\u{1b}'), "{}", output.stdout);
    assert!(
        !output.stdout.lines().any(|line| line.starts_with("fake")),
        "{}",
        output.stdout
    );
    // The JSON holds the name as it is (a string can), but for the byte that is not UTF-8.
    let paths: Vec<&str> = report["local_writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("\nfake | line\u{1b}[2J")),
        "{paths:?}"
    );
    assert!(paths.contains(&"notes/x\u{fffd}y"), "{paths:?}");
}

#[test]
fn without_root_copies_are_copy_on_write_in_a_user_namespace_and_find_the_same_writes() {
    let setpriv = Path::new("/usr/bin/setpriv");
    if !crate::support::root_with(&["/usr/bin/setpriv"]) {
        eprintln!("NOT RUN: needs root and /usr/bin/setpriv to run shoal as another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let base = tempfile::tempdir().unwrap();
    let (app, tmp) = (base.path().join("app"), base.path().join("tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    // A directory of the app deleted and made again, which overlayfs marks in an extended
    // attribute (in a user namespace, a `user.` one).
    notes_app(
        &app,
        r#"
        shutil.rmtree("data", ignore_errors=True)
        os.makedirs("data")
        with open("data/one.txt", "w") as one:
            one.write("written again")"#,
    );
    std::fs::create_dir(app.join("data")).unwrap();
    std::fs::write(app.join("data/one.txt"), "one").unwrap();
    std::fs::write(app.join("data/two.txt"), "two").unwrap();
    for entry in walkdir(base.path()) {
        std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let json = tmp.join("report.json");
    let output = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(shoal_bin())
        .args([
            "verify",
            "-f",
            "app/Procfile",
            "app/notes.http",
            "--seed",
            "7",
            "--json",
        ])
        .arg(&json)
        .current_dir(base.path())
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1")
        .env_remove("PORT")
        .output()
        .unwrap();
    let output = Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_verdict(&output, true);
    let report = json_report(&json);
    if report["copies"]["how"] != "copy-on-write" {
        eprintln!("NOT RUN (the user namespace part): {}", report["copies"]);
        return;
    }
    let changes: std::collections::BTreeSet<(String, String)> = local_writes(&report)
        .into_iter()
        .map(|(_, _, change, path)| (change, path))
        .collect();
    let expected = [
        ("changed", "data/one.txt"),
        ("created", "notes/n-*"),
        ("deleted", "data/two.txt"),
        ("deleted", "seed.txt"),
    ]
    .map(|(change, path)| (change.to_owned(), path.to_owned()));
    assert_eq!(changes.into_iter().collect::<Vec<_>>(), expected);
    assert!(app.join("data/two.txt").exists() && app.join("seed.txt").exists());
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| name != "report.json")
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// `dir` and every path below it.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                paths.extend(walkdir(&entry.path()));
            } else {
                paths.push(entry.path());
            }
        }
    }
    paths
}

#[test]
fn a_run_that_ends_without_a_verdict_leaves_no_copy_behind() {
    // The formation fails with its copy-on-write copy still mounted.
    let app = App::new("web: echo booting; exec sleep 600\n");
    app.write("only.http", "GET /\n");
    let tmp = tempfile::tempdir().unwrap();
    let output = app
        .command(&["verify", "only.http", "--boot-timeout", "1", "--json", "-"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}
