//! `shoal export`: the files for Kubernetes, systemd and compose (snapshots, then the targets'
//! own checkers: the Kubernetes schemas through `kubernetes-validate`, `systemd-analyze verify`,
//! and PyYAML reading every YAML file back), overwrite protection, and the errors.
//!
//! The checkers are external tools; `scripts/test` installs them and names them in
//! `SHOAL_TEST_KUBERNETES_VALIDATE` and `SHOAL_TEST_SYSTEMD_ANALYZE`. Without those variables
//! the tests that need them say so and pass without checking.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{App, Output};

/// Kubernetes versions the manifests are validated against: the oldest and newest schemas
/// `kubernetes-validate` ships that shoal supports, and one between.
const KUBERNETES_VERSIONS: [&str; 3] = ["1.27.0", "1.32.0", "1.37.0"];

/// An app with a release step, a web and two other types, and `.env` values that YAML, systemd
/// and compose would each misread if written carelessly.
fn demo() -> App {
    let app = App::new(
        "release: ./migrate --yes\nweb: ./server -p $PORT\nworker: bundle exec work -q \"low prio\"\nclock_tick: ./tick; echo 100% done\n",
    );
    app.write(
        ".env",
        "DATABASE_URL=postgres://app:hunter2@db.internal:5432/app\nAPI_KEY=sk-live-123\nMODE=yes\nZIP=0123\nGREETING='$HOME: \"hi\" 50%'\nMULTI=\"one\\ntwo\"\n",
    );
    app
}

fn export(app: &App, args: &[&str]) -> Output {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    app.run(&all)
}

/// The files `shoal export` said it wrote, from its `wrote PATH` lines.
fn written(out: &Output) -> Vec<PathBuf> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("wrote "))
        .map(PathBuf::from)
        .collect()
}

/// Everything an export shows and writes, in order, with the app's temporary path replaced.
fn transcript(app: &App, out: &Output) -> String {
    let mut text = format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code(),
        out.stdout,
        out.stderr
    );
    for path in written(out) {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let contents = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "=== {} ({mode:o})\n{contents}",
            path.file_name().unwrap().to_string_lossy()
        ));
    }
    text.replace(&app.path().display().to_string(), "[APP]")
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

/// The tool named in `var`, or `None` after saying that the test did not run.
fn tool(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            eprintln!("NOT RUN: {var} is not set; scripts/test sets it and runs this check");
            None
        }
    }
}

#[test]
fn kubernetes_manifests() {
    let app = demo();
    let out = export(
        &app,
        &[
            "kubernetes",
            "-o",
            "k8s",
            "--app",
            "demo",
            "--image",
            "registry.example.com/demo:1.4",
            "-m",
            "web=2,worker=0",
            "--hpa",
            "--health-path",
            "/health",
            "-t",
            "20",
        ],
    );
    assert_ok(&out);
    insta::assert_snapshot!(transcript(&app, &out));
}

#[test]
fn systemd_units() {
    let app = demo();
    let out = export(
        &app,
        &[
            "systemd",
            "-o",
            "units",
            "--app",
            "demo",
            "-m",
            "web=2,worker=0",
        ],
    );
    assert_ok(&out);
    insta::assert_snapshot!(transcript(&app, &out));
}

#[test]
fn compose_file() {
    let app = demo();
    let out = export(
        &app,
        &[
            "compose", "-o", "deploy", "--app", "demo", "-m", "web=2", "-t", "2.5",
        ],
    );
    assert_ok(&out);
    insta::assert_snapshot!(transcript(&app, &out));
}

/// The exports the checkers below look at: every format, with and without the options that
/// change their shape.
fn variants(app: &App) -> Vec<(&'static str, PathBuf)> {
    let cases: [(&str, &[&str]); 7] = [
        (
            "kubernetes",
            &[
                "--image",
                "demo:1",
                "-m",
                "web=3,worker=0",
                "--memory-limit",
                "256M",
                "--memory-limit",
                "web=1G",
            ],
        ),
        (
            "kubernetes",
            &[
                "--image",
                "demo:1",
                "--hpa",
                "--hpa-max",
                "9",
                "--health-path",
                "/up",
                "--memory-limit",
                "web=1500M",
            ],
        ),
        (
            "kubernetes",
            &[
                "--image",
                "demo:1",
                "-t",
                "0.5",
                "-f",
                "Procfile.plain",
                "-e",
                "empty.env",
            ],
        ),
        ("systemd", &["-m", "web=2", "--memory-limit", "web=512M"]),
        ("systemd", &["-f", "Procfile.plain", "-e", "empty.env"]),
        (
            "compose",
            &[
                "-m",
                "all=2",
                "--memory-limit",
                "web=1G",
                "--memory-limit",
                "1536K",
            ],
        ),
        (
            "compose",
            &[
                "--image",
                "demo:1",
                "-f",
                "Procfile.plain",
                "-e",
                "empty.env",
            ],
        ),
    ];
    app.write("Procfile.plain", "web: ./server\n");
    app.write("empty.env", "");
    cases
        .iter()
        .enumerate()
        .map(|(i, (format, args))| {
            let dir = app.path().join(format!("out-{i}-{format}"));
            let mut all = vec![*format, "-o", dir.to_str().unwrap()];
            all.extend_from_slice(args);
            assert_ok(&export(app, &all));
            (*format, dir)
        })
        .collect()
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .{ext} file in {}", dir.display());
    files
}

#[test]
fn kubernetes_manifests_match_the_schemas() {
    let Some(validate) = tool("SHOAL_TEST_KUBERNETES_VALIDATE") else {
        return;
    };
    let app = demo();
    let files: Vec<PathBuf> = variants(&app)
        .into_iter()
        .filter(|(format, _)| *format == "kubernetes")
        .flat_map(|(_, dir)| files_in(&dir, "yaml"))
        .collect();
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validate)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "kubernetes-validate {version} rejected the manifests:\n{text}"
        );
    }
}

/// Every YAML file, read by PyYAML (a YAML 1.1 parser, as strict about `yes` and `0123` as
/// Kubernetes' own), printed back as JSON.
fn pyyaml(files: &[PathBuf]) -> Option<serde_json::Value> {
    let validate = tool("SHOAL_TEST_KUBERNETES_VALIDATE")?;
    let python = validate.with_file_name("python3");
    let script = "import json, sys, yaml\nprint(json.dumps({f: list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]}))";
    let out = Command::new(python)
        .args(["-c", script])
        .args(files)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn yaml_reads_back_as_written() {
    let app = demo();
    let dirs = variants(&app);
    let files: Vec<PathBuf> = dirs
        .iter()
        .filter(|(format, _)| *format != "systemd")
        .flat_map(|(_, dir)| files_in(dir, "yaml"))
        .collect();
    let Some(docs) = pyyaml(&files) else {
        return;
    };
    let doc = |dir: &Path, name: &str| docs[dir.join(name).to_str().unwrap()][0].clone();
    let (k8s, compose) = (&dirs[0].1, &dirs[5].1);
    let app_name = app
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    let app_name: String = app_name.trim_start_matches('.').to_owned();

    let config = doc(k8s, &format!("{app_name}-env.configmap.yaml"));
    assert_eq!(config["data"]["MODE"], "yes");
    assert_eq!(config["data"]["ZIP"], "0123");
    assert_eq!(config["data"]["GREETING"], "$HOME: \"hi\" 50%");
    assert_eq!(config["data"]["MULTI"], "one\ntwo");
    assert!(config["data"].get("API_KEY").is_none());
    let secret = doc(k8s, &format!("{app_name}-env.secret.yaml"));
    assert_eq!(secret["stringData"]["API_KEY"], "sk-live-123");
    let web = doc(k8s, &format!("{app_name}-web.deployment.yaml"));
    assert_eq!(web["spec"]["replicas"], 3);
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][2], "exec ./server -p $PORT");
    assert_eq!(
        web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        15
    );
    // The memory limit is also the request: the scheduler reserves what the kernel allows.
    let memory = serde_json::json!({"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}});
    assert_eq!(container["resources"], memory);
    let worker = doc(k8s, &format!("{app_name}-worker.deployment.yaml"));
    assert_eq!(worker["spec"]["replicas"], 0);
    let memory =
        serde_json::json!({"requests": {"memory": "256Mi"}, "limits": {"memory": "256Mi"}});
    assert_eq!(
        worker["spec"]["template"]["spec"]["containers"][0]["resources"],
        memory
    );
    // With the autoscaler, its CPU request beside the memory.
    let web = doc(&dirs[1].1, &format!("{app_name}-web.deployment.yaml"));
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["resources"],
        serde_json::json!({
            "requests": {"cpu": "100m", "memory": "1500Mi"},
            "limits": {"memory": "1500Mi"}
        })
    );
    let worker = doc(&dirs[1].1, &format!("{app_name}-worker.deployment.yaml"));
    assert!(
        worker["spec"]["template"]["spec"]["containers"][0]
            .get("resources")
            .is_none()
    );
    let service = doc(k8s, &format!("{app_name}-web.service.yaml"));
    assert_eq!(service["spec"]["sessionAffinity"], "None");

    let compose = doc(compose, "compose.yaml");
    let services = &compose["services"];
    assert_eq!(services["web"]["deploy"]["replicas"], 2);
    assert_eq!(
        services["web"]["deploy"]["resources"]["limits"]["memory"],
        "1g"
    );
    assert_eq!(
        services["worker"]["deploy"]["resources"]["limits"]["memory"],
        "1536k"
    );
    assert!(services["release"].get("deploy").is_none());
    assert_eq!(services["release"]["restart"], "no");
    // Compose substitutes `$VAR`: `$$` is how a literal `$` is written.
    assert_eq!(
        services["web"]["environment"]["GREETING"],
        "$$HOME: \"hi\" 50%"
    );
    assert_eq!(services["web"]["entrypoint"][2], "exec ./server -p $$PORT");
    assert_eq!(services["web"]["ports"][0], "5000:5000");
    assert!(services["worker"].get("ports").is_none());
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = tool("SHOAL_TEST_SYSTEMD_ANALYZE") else {
        return;
    };
    let app = demo();
    for (format, dir) in variants(&app) {
        if format != "systemd" {
            continue;
        }
        let mut units = files_in(&dir, "target");
        units.extend(files_in(&dir, "service"));
        if dir.ends_with("out-3-systemd") {
            let web = units
                .iter()
                .find(|u| u.to_string_lossy().ends_with("-web.1.service"));
            let text = std::fs::read_to_string(web.unwrap()).unwrap();
            assert!(text.contains("\nMemoryMax=512M\n"), "{text}");
            let worker = units
                .iter()
                .find(|u| u.to_string_lossy().ends_with("-worker.1.service"));
            let text = std::fs::read_to_string(worker.unwrap()).unwrap();
            assert!(!text.contains("MemoryMax"), "{text}");
        }
        let out = Command::new(&analyze)
            .args(["verify", "--man=no"])
            .args(&units)
            .output()
            .expect("run systemd-analyze");
        // `verify` reports most problems as warnings and still exits 0: any output is a failure.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.trim().is_empty(),
            "systemd-analyze verify on {}:\n{text}",
            dir.display()
        );
    }
}

/// Ports (README, `shoal export` and Ports): the plan `shoal check` shows, laid out without the
/// router. Under `shoal start` the router holds the formation's port and `web.1` gets the next
/// block; on the targets the engine fronts `web` itself, so `web.1` listens on the formation's
/// port and every other type, and `release`, moves down one block.
#[test]
fn ports_are_checks_without_the_router() {
    let app = App::new("release: ./migrate\nweb: ./server\nworker: ./work\n");
    let check = app.run(&["check", "--json", "-p", "6000", "-m", "web=2"]);
    assert_ok(&check);
    let plan: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    let ports: Vec<(String, u64)> = plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["port"].as_u64().unwrap(),
            )
        })
        .chain([(
            "release.1".to_owned(),
            plan["release"]["port"].as_u64().unwrap(),
        )])
        .collect();
    let expected = |web: u64| {
        vec![
            ("web.1".to_owned(), web),
            ("web.2".to_owned(), web + 1),
            ("worker.1".to_owned(), web + 100),
            ("release.1".to_owned(), web + 200),
        ]
    };
    assert_eq!(plan["port"], 6000);
    assert_eq!(ports, expected(6100), "shoal start's layout");

    let out = export(
        &app,
        &[
            "systemd", "-o", "units", "--app", "demo", "-p", "6000", "-m", "web=2",
        ],
    );
    assert_ok(&out);
    let exported: Vec<(String, u64)> = ["web.1", "web.2", "worker.1", "release"]
        .into_iter()
        .map(|instance| {
            let unit =
                std::fs::read_to_string(app.path().join(format!("units/demo-{instance}.service")))
                    .unwrap();
            let port = unit
                .lines()
                .find_map(|l| l.strip_prefix("Environment=PORT="))
                .and_then(|l| l.split(' ').next())
                .unwrap_or_else(|| panic!("no PORT in {instance}:\n{unit}"));
            let name = instance.replace("release", "release.1");
            (name, port.parse().unwrap())
        })
        .collect();
    assert_eq!(exported, expected(6000), "the export's layout");

    let out = export(&app, &["compose", "-o", "compose", "-p", "6000"]);
    assert_ok(&out);
    let compose = std::fs::read_to_string(app.path().join("compose/compose.yaml")).unwrap();
    assert!(compose.contains("\"6000:6000\""), "{compose}");
}

#[test]
fn unknown_format_suggests_the_closest() {
    let app = demo();
    let out = export(&app, &["kubernets", "-o", "out"]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("'kubernets'"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("[possible values: kubernetes, swarm, systemd, compose]"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("a similar value exists: 'kubernetes'"),
        "{}",
        out.stderr
    );
    assert!(!app.path().join("out").exists());
}

#[test]
fn kubernetes_needs_an_image() {
    let app = demo();
    let out = export(&app, &["kubernetes", "-o", "out", "--app", "demo"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("error: kubernetes runs containers from an image: pass the image the app is built into with --image, e.g. --image registry.example.com/demo:1.0"),
        "{}",
        out.stderr
    );
    assert!(!app.path().join("out").exists());
}

#[test]
fn names_that_cannot_be_made_valid_are_errors() {
    let app = demo();
    let out = export(
        &app,
        &["kubernetes", "-o", "out", "--image", "x", "--app", "42"],
    );
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("error: the app name `42` cannot be used as a kubernetes name: `42` does not start with a letter, as Kubernetes Service names must; choose another with --app"),
        "{}",
        out.stderr
    );

    let clash = App::new("web: a\nworker_1: b\nworker-1: c\n");
    let out = export(
        &clash,
        &["kubernetes", "-o", "out", "--image", "x", "--app", "demo"],
    );
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("error: process types `worker_1` and `worker-1` would both be named `worker-1` on kubernetes; rename one of them in the Procfile"),
        "{}",
        out.stderr
    );
    // systemd keeps `_`, so the same Procfile exports there.
    assert_ok(&export(&clash, &["systemd", "-o", "out", "--app", "demo"]));
}

#[test]
fn refuses_to_overwrite_foreign_files_and_writes_nothing() {
    let app = demo();
    let dir = app.path().join("deploy");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), "services: {}\n").unwrap();
    let out = export(&app, &["compose", "-o", "deploy"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains(&format!(
            "error: this file was not written by shoal export and would be overwritten: `{}`; move it away or pass --force",
            dir.join("compose.yaml").display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("compose.yaml")).unwrap(),
        "services: {}\n"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing else is written"
    );

    assert_ok(&export(&app, &["compose", "-o", "deploy", "--force"]));
    let written = std::fs::read_to_string(dir.join("compose.yaml")).unwrap();
    assert!(
        written.starts_with("# Generated by shoal export compose --app "),
        "{written}"
    );
    // Its own files it overwrites without --force.
    assert_ok(&export(&app, &["compose", "-o", "deploy", "-m", "web=3"]));
}

#[test]
fn re_export_removes_the_files_of_types_that_are_gone() {
    let app = demo();
    assert_ok(&export(
        &app,
        &["systemd", "-o", "units", "--app", "demo", "-m", "web=2"],
    ));
    let dir = app.path().join("units");
    assert!(dir.join("demo-web.2.service").exists());
    std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();

    let out = export(
        &app,
        &[
            "systemd",
            "-o",
            "units",
            "--app",
            "demo",
            "-m",
            "web=1,worker=0",
        ],
    );
    assert_ok(&out);
    for gone in ["demo-web.2.service", "demo-worker.1.service"] {
        assert!(!dir.join(gone).exists(), "{gone}");
        assert!(
            out.stdout.contains(&format!(
                "removed {} (no longer part of the export)",
                dir.join(gone).display()
            )),
            "{}",
            out.stdout
        );
    }
    assert!(dir.join("demo-web.1.service").exists());
    assert!(dir.join("notes.txt").exists());
}

/// Every entry of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `-o` naming a file, or a path inside one, is the user's to fix (exit 2): the message names
/// the file in the way and what was expected, and nothing is written.
#[test]
fn an_output_path_that_is_a_file_is_named() {
    let app = demo();
    app.write("taken", "a file\n");
    let before = listing(app.path());
    for output in ["taken", "taken/deploy"] {
        let out = export(&app, &["compose", "-o", output]);
        assert_eq!(out.code(), Some(2), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "error: cannot use `{}` as the output directory: `{}` is not a directory; expected a directory or a path that does not exist yet",
                app.path().join(output).display(),
                app.path().join("taken").display()
            )),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    assert_eq!(listing(app.path()), before);
    assert_eq!(
        std::fs::read_to_string(app.path().join("taken")).unwrap(),
        "a file\n"
    );
}

/// A directory that cannot be written into, or created, fails the export (exit 1: the flags
/// were right, the export failed on the way), names the path, and leaves nothing behind.
#[test]
fn an_unwritable_output_directory_fails_and_writes_nothing() {
    let app = demo();
    let locked = app.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    // root writes into a 0500 directory anyway; sysfs refuses new files even to root.
    let unwritable = |dir: &Path| std::fs::write(dir.join("probe"), "").is_err();
    let dir = if unwritable(&locked) {
        locked
    } else if unwritable(Path::new("/sys/kernel")) {
        PathBuf::from("/sys/kernel")
    } else {
        eprintln!("NOT RUN: no directory here refuses to be written");
        return;
    };
    let before = listing(&dir);

    let output = dir.display().to_string();
    let out = export(&app, &["compose", "-o", &output]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "error: cannot write `{}`",
            dir.join("compose.yaml").display()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("caused by:"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(listing(&dir), before, "nothing is left in `{output}`");

    let missing = dir.join("deploy");
    let output = missing.display().to_string();
    let out = export(&app, &["compose", "-o", &output]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "error: cannot create the output directory `{output}`"
        )),
        "{}",
        out.stderr
    );
    assert!(!missing.exists());
}

#[test]
fn hpa_is_for_kubernetes_web_only() {
    let app = demo();
    let out = export(&app, &["compose", "-o", "out", "--hpa"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("error: --hpa adds a Kubernetes HorizontalPodAutoscaler; compose has none"),
        "{}",
        out.stderr
    );

    let out = export(
        &app,
        &[
            "kubernetes",
            "-o",
            "out",
            "--image",
            "x",
            "--hpa",
            "-m",
            "web=0",
        ],
    );
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("--hpa scales `web`, but the formation runs no `web` instance (web=0)"),
        "{}",
        out.stderr
    );
    assert!(!app.path().join("out").exists());
}

/// An app whose only secrets are passwords inside URL values: no variable name looks secret.
fn url_passwords() -> App {
    let app = App::new("web: ./server -p $PORT\n");
    app.write(
        ".env",
        "DATABASE_URL=postgres://app:hunter2@db.internal/app\nREDIS_URL=redis://:s3cret@cache:6379/0\nSESSION_URL=memcache://sess:pw-in-url@sessions:11211\nLOG_LEVEL=info\n",
    );
    app
}

const URL_PASSWORDS: [&str; 3] = ["hunter2", "s3cret", "pw-in-url"];

/// The files in `dir` that others than the owner may read, with their contents.
fn readable_by_others(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().permissions().mode() & 0o077 != 0)
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    found.sort();
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_no_url_password_readable(dir: &Path) {
    for (path, text) in readable_by_others(dir) {
        for password in URL_PASSWORDS {
            assert!(
                !text.contains(password),
                "`{password}` is in {} ({:o}):\n{text}",
                path.display(),
                mode(&path)
            );
        }
    }
}

#[test]
fn kubernetes_puts_url_passwords_in_the_secret() {
    let app = url_passwords();
    let out = export(
        &app,
        &[
            "kubernetes",
            "-o",
            "k8s",
            "--app",
            "shop",
            "--image",
            "shop:1",
        ],
    );
    assert_ok(&out);
    let dir = app.path().join("k8s");
    let config = std::fs::read_to_string(dir.join("shop-env.configmap.yaml")).unwrap();
    assert!(config.contains("LOG_LEVEL: info"), "{config}");
    let secret_path = dir.join("shop-env.secret.yaml");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    for key in ["DATABASE_URL", "REDIS_URL", "SESSION_URL"] {
        assert!(!config.contains(key), "{key} in the ConfigMap:\n{config}");
        assert!(secret.contains(key), "{key} not in the Secret:\n{secret}");
    }
    assert_eq!(mode(&secret_path), 0o600);
    assert_no_url_password_readable(&dir);
}

#[test]
fn systemd_keeps_url_passwords_owner_only() {
    let app = url_passwords();
    assert_ok(&export(&app, &["systemd", "-o", "units", "--app", "shop"]));
    let dir = app.path().join("units");
    let env = std::fs::read_to_string(dir.join("shop.env")).unwrap();
    assert!(env.contains("hunter2"), "{env}");
    assert_eq!(mode(&dir.join("shop.env")), 0o600);
    assert_eq!(mode(&dir.join("shop-web.1.service")), 0o644);
    assert_no_url_password_readable(&dir);
}

#[test]
fn compose_keeps_url_passwords_owner_only() {
    let app = url_passwords();
    assert_ok(&export(&app, &["compose", "-o", "deploy", "--app", "shop"]));
    let dir = app.path().join("deploy");
    assert_eq!(mode(&dir.join("compose.yaml")), 0o600);
    assert_no_url_password_readable(&dir);

    // Without a secret, the file stays readable, as the engine's tools may need.
    let plain = App::new("web: ./server -p $PORT\n");
    plain.write(".env", "DATABASE_URL=postgres://db.internal/app\n");
    assert_ok(&export(&plain, &["compose", "-o", "deploy"]));
    assert_eq!(mode(&plain.path().join("deploy/compose.yaml")), 0o644);
}

/// Two apps exported into one directory keep each other's files; re-exporting one with fewer
/// process types removes only its own stale file.
#[test]
fn apps_exported_into_one_directory_keep_each_others_files() {
    let app = App::new("web: ./server -p $PORT\nworker: ./work\n");
    for format in ["systemd", "kubernetes"] {
        let dir = app.path().join(format!("out-{format}"));
        let dir_arg = dir.to_str().unwrap();
        let export_app = |name: &str, formation: &str| {
            let mut args = vec![format, "-o", dir_arg, "--app", name, "-m", formation];
            if format == "kubernetes" {
                args.extend(["--image", "x:1"]);
            }
            export(&app, &args)
        };
        assert_ok(&export_app("shop", "web=1,worker=1"));
        let shop = std::fs::read_dir(&dir).unwrap().count();
        let out = export_app("blog", "web=1,worker=1");
        assert_ok(&out);
        assert!(!out.stdout.contains("removed"), "{}", out.stdout);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2 * shop);

        let (shop_worker, blog_worker) = match format {
            "systemd" => ("shop-worker.1.service", "blog-worker.1.service"),
            _ => ("shop-worker.deployment.yaml", "blog-worker.deployment.yaml"),
        };
        let out = export_app("shop", "web=1,worker=0");
        assert_ok(&out);
        let removed: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("removed "))
            .collect();
        if format == "systemd" {
            assert_eq!(
                removed,
                [format!(
                    "removed {} (no longer part of the export)",
                    dir.join(shop_worker).display()
                )],
                "{format}"
            );
            assert!(!dir.join(shop_worker).exists());
        } else {
            // Kubernetes keeps a type scaled to 0 as `replicas: 0`.
            assert!(removed.is_empty(), "{}", out.stdout);
        }
        assert!(dir.join(blog_worker).exists(), "{format}");
        let blog_files = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("blog")
            })
            .count();
        assert_eq!(blog_files, shop, "{format}: blog's files are all there");
    }

    // Every app's compose file is `compose.yaml`: blog's export does not replace shop's.
    assert_ok(&export(&app, &["compose", "-o", "deploy", "--app", "shop"]));
    let shop_compose = std::fs::read_to_string(app.path().join("deploy/compose.yaml")).unwrap();
    let out = export(&app, &["compose", "-o", "deploy", "--app", "blog"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "(by `shoal export compose --app shop`); export `blog` into another directory, or pass --force"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(app.path().join("deploy/compose.yaml")).unwrap(),
        shop_compose
    );
}

/// Files that carry a generated-by line but are not this export's own: the line of an older
/// shoal (no app), another app's, and a copy of one of this app's files under another name.
#[test]
fn hand_made_files_with_a_marker_line_survive() {
    let app = App::new("web: ./server -p $PORT\nworker: ./work\n");
    assert_ok(&export(
        &app,
        &["systemd", "-o", "units", "--app", "shop", "-m", "web=2"],
    ));
    let dir = app.path().join("units");
    let legacy = "# Generated by shoal export systemd; edit the Procfile or .env and export again instead\n[Unit]\nDescription=mine\n";
    std::fs::write(dir.join("mine.service"), legacy).unwrap();
    let foreign = "# Generated by shoal export systemd --app blog (blog-web.1.service); edit the Procfile or .env and export again instead\n[Unit]\n";
    std::fs::write(dir.join("blog-web.1.service"), foreign).unwrap();
    let web2 = std::fs::read_to_string(dir.join("shop-web.2.service")).unwrap();
    let copy = format!("{web2}# tuned by hand\n");
    std::fs::write(dir.join("shop-web-tuned.service"), &copy).unwrap();

    let out = export(
        &app,
        &["systemd", "-o", "units", "--app", "shop", "-m", "web=1"],
    );
    assert_ok(&out);
    assert!(!dir.join("shop-web.2.service").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("mine.service")).unwrap(),
        legacy
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("blog-web.1.service")).unwrap(),
        foreign
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("shop-web-tuned.service")).unwrap(),
        copy
    );
    for kept in ["mine.service", "shop-web-tuned.service"] {
        assert!(
            out.stderr
                .contains(&format!("warning: kept `{}`", dir.join(kept).display())),
            "{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("blog-web"), "{}", out.stderr);
}
