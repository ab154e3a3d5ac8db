//! `shoal export swarm`: the stack files (a snapshot, PyYAML and `docker stack config` reading
//! them back), and the files run on a real Docker Swarm: the release job completes before the
//! formation starts, every `web` replica has its own name and an empty scratch directory after a
//! restart, requests from a container on the stack's network reach every replica, a forced
//! rolling update under load fails no request, and exporting with another `-m` and deploying
//! again scales.
//!
//! `scripts/test` (through `scripts/swarm.sh`) starts the Docker daemon, makes a one-node swarm
//! and names the docker CLI in `SHOAL_TEST_DOCKER`; without `SHOAL_TEST_SWARM` the engine tests
//! say NOT RUN with the reason. They reach `web` by DNS round robin (`--endpoint-mode dnsrr`)
//! from a client container on the stack's network, as the routing mesh needs IPVS, which not
//! every kernel has. The image is imported from a directory holding `shoal-fake`, the shared
//! libraries it needs and busybox (`/bin/sh`, `wget`, `grep`): no registry, no download.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{App, Output, fake_bin};

fn export(app: &App, args: &[&str]) -> Output {
    let mut all = vec!["export", "swarm"];
    all.extend_from_slice(args);
    app.run(&all)
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

/// The app of the export tests: a release step, `web`, a worker, and `.env` values that YAML,
/// `docker stack deploy` (`$VAR`) and swarm's templates (`{{`) would each misread.
fn demo() -> App {
    let app = App::new(
        "release: ./migrate --yes\nweb: ./server -p $PORT\nworker: bundle exec work -q \"low prio\"\n",
    );
    app.write(
        ".env",
        "DATABASE_URL=postgres://app:hunter2@db.internal:5432/app\nAPI_KEY=sk-live-123\nMODE=yes\nGREETING='$HOME: {{.Task.Slot}} \"hi\"'\n",
    );
    app
}

/// Everything an export shows and writes, in order, with the app's temporary path replaced.
fn transcript(app: &App, out: &Output) -> String {
    let mut text = format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code(),
        out.stdout,
        out.stderr
    );
    for line in out.stdout.lines() {
        let Some(path) = line.strip_prefix("wrote ") else {
            continue;
        };
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let contents = std::fs::read_to_string(path).unwrap();
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        text.push_str(&format!("=== {name} ({mode:o})\n{contents}"));
    }
    text.replace(&app.path().display().to_string(), "[APP]")
}

#[test]
fn swarm_stack_files() {
    let app = demo();
    let out = export(
        &app,
        &[
            "-o",
            "swarm",
            "--app",
            "demo",
            "--image",
            "registry.example.com/demo:1.4",
            "-m",
            "web=2,worker=0",
            "-t",
            "20",
            "--memory-limit",
            "web=512M",
        ],
    );
    assert_ok(&out);
    insta::assert_snapshot!(transcript(&app, &out));
}

#[test]
fn swarm_with_a_health_path_and_dnsrr() {
    let app = App::new("web: ./server\n");
    let out = export(
        &app,
        &[
            "-o",
            "swarm",
            "--app",
            "shop",
            "--image",
            "shop:1",
            "--health-path",
            "/up?check='1'",
            "--endpoint-mode",
            "dnsrr",
        ],
    );
    assert_ok(&out);
    let stack = std::fs::read_to_string(app.path().join("swarm/shop.stack.yaml")).unwrap();
    // The shell gets the URL in single quotes (`'` as `'\''`); YAML doubles the backslashes.
    let url = r#"'http://127.0.0.1:5000/up?check='\\''1'\\'''"#;
    assert!(
        stack.contains(&format!(
            "- \"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}\"\n"
        )),
        "{stack}"
    );
    assert!(stack.contains("endpoint_mode: dnsrr"), "{stack}");
    assert!(
        !stack.contains("ports:"),
        "dnsrr publishes nothing:\n{stack}"
    );
    // No secret, no release: neither a secret file nor a release stack.
    assert!(!stack.contains("secrets:"), "{stack}");
    let names: Vec<String> = std::fs::read_dir(app.path().join("swarm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["shop.stack.yaml"]);
    assert!(
        out.stderr
            .contains("reach it as `shop_web:5000` on the network `shop_default`"),
        "{}",
        out.stderr
    );
}

#[test]
fn swarm_needs_an_image_and_says_which_flags_it_ignores() {
    let app = demo();
    let out = export(&app, &["-o", "out", "--app", "demo"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("error: swarm runs containers from an image: pass the image the app is built into with --image, e.g. --image registry.example.com/demo:1.0"),
        "{}",
        out.stderr
    );
    assert!(!app.path().join("out").exists());

    let out = app.run(&["export", "compose", "-o", "c", "--endpoint-mode", "dnsrr"]);
    assert_ok(&out);
    assert!(
        out.stderr
            .contains("warning: --endpoint-mode is used by swarm only; compose ignores it"),
        "{}",
        out.stderr
    );
}

/// The secret `.env` values (a secret-looking name, a URL password) are only in the secret
/// file, readable by its owner; the stack files, readable by all, hold none of them.
#[test]
fn swarm_keeps_secrets_owner_only() {
    let app = App::new("web: ./server -p $PORT\n");
    app.write(
        ".env",
        "DATABASE_URL=postgres://app:hunter2@db.internal/app\nREDIS_URL=redis://:s3cret@cache:6379/0\nAPI_TOKEN=tok-123\nLOG_LEVEL=info\n",
    );
    assert_ok(&export(
        &app,
        &["-o", "out", "--app", "shop", "--image", "shop:1"],
    ));
    let dir = app.path().join("out");
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("shop.secret.sh"), 0o600);
    assert_eq!(mode("shop.stack.yaml"), 0o644);
    let secret = std::fs::read_to_string(dir.join("shop.secret.sh")).unwrap();
    let stack = std::fs::read_to_string(dir.join("shop.stack.yaml")).unwrap();
    for value in ["hunter2", "s3cret", "tok-123"] {
        assert!(
            secret.contains(value),
            "{value} not in the secret:\n{secret}"
        );
        assert!(
            !stack.contains(value),
            "{value} in the stack file:\n{stack}"
        );
    }
    assert!(stack.contains("LOG_LEVEL: info"), "{stack}");

    // A new secret value is a new Docker secret (they cannot change), the old name gone.
    let name = |stack: &str| {
        stack
            .lines()
            .find_map(|l| l.trim().strip_prefix("name: shop-env-"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no secret name in\n{stack}"))
    };
    let before = name(&stack);
    app.write(
        ".env",
        "DATABASE_URL=postgres://app:hunter3@db.internal/app\nLOG_LEVEL=info\n",
    );
    assert_ok(&export(
        &app,
        &["-o", "out", "--app", "shop", "--image", "shop:1"],
    ));
    let after = name(&std::fs::read_to_string(dir.join("shop.stack.yaml")).unwrap());
    assert_ne!(before, after);

    // Without secret values, the secret file goes and the stack files name no secret.
    app.write(".env", "LOG_LEVEL=info\n");
    let out = export(&app, &["-o", "out", "--app", "shop", "--image", "shop:1"]);
    assert_ok(&out);
    assert!(
        out.stdout.contains(&format!(
            "removed {} (no longer part of the export)",
            dir.join("shop.secret.sh").display()
        )),
        "{}",
        out.stdout
    );
    let stack = std::fs::read_to_string(dir.join("shop.stack.yaml")).unwrap();
    assert!(!stack.contains("secrets:"), "{stack}");
    assert!(!stack.contains("/run/secrets"), "{stack}");
}

/// What the tests that need the engine or its CLI use, or `None` after saying why they did not
/// run.
fn docker_cli() -> Option<PathBuf> {
    match std::env::var_os("SHOAL_TEST_DOCKER") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            let reason = std::env::var("SHOAL_TEST_SWARM_NOT_RUN").unwrap_or_else(|_| {
                "SHOAL_TEST_DOCKER is not set; scripts/test (scripts/swarm.sh) sets it".to_owned()
            });
            eprintln!("NOT RUN: {reason}");
            None
        }
    }
}

/// `docker stack config`, the CLI's own loader (schema, interpolation, merging), reads every
/// variant back; it changes nothing on the engine.
#[test]
fn swarm_stack_files_pass_docker_stack_config() {
    let Some(docker) = docker_cli() else {
        return;
    };
    let app = demo();
    app.write("Procfile.plain", "web: ./server\n");
    app.write("empty.env", "");
    let cases: [&[&str]; 3] = [
        &["-m", "web=3,worker=0", "--memory-limit", "256M"],
        &["--endpoint-mode", "dnsrr", "--health-path", "/up"],
        &["-f", "Procfile.plain", "-e", "empty.env", "-t", "0.5"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let dir = app.path().join(format!("out-{i}"));
        let mut all = vec!["-o", dir.to_str().unwrap(), "--image", "demo:1"];
        all.extend_from_slice(args);
        assert_ok(&export(&app, &all));
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            if !path.to_string_lossy().ends_with(".stack.yaml") {
                continue;
            }
            let out = Command::new(&docker)
                .args(["stack", "config", "-c"])
                .arg(&path)
                .output()
                .expect("run docker stack config");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("unknown command") || stderr.contains("unknown flag") {
                eprintln!("NOT RUN: `{} stack config` is missing", docker.display());
                return;
            }
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "docker stack config {}:\n{stderr}",
                path.display()
            );
            let config = String::from_utf8_lossy(&out.stdout);
            if path.to_string_lossy().ends_with("-release.stack.yaml") {
                assert!(config.contains("mode: replicated-job"), "{config}");
            } else {
                // Substitution and templates leave the values as `.env` has them.
                assert!(
                    config.contains(r#"GREETING: $HOME: {{"{{"}}.Task.Slot}} "hi""#)
                        || config.contains(r#"GREETING: '$HOME: {{"{{"}}.Task.Slot}} "hi"'"#)
                        || !config.contains("GREETING"),
                    "{config}"
                );
                assert!(
                    config.contains("SHOAL_INSTANCE: web.{{.Task.Slot}}"),
                    "{config}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// On the engine.

/// How long a stack may take to converge on a busy 2-core machine.
const CONVERGE: Duration = Duration::from_secs(240);

/// The docker CLI against the swarm, and what the test made there, removed when dropped.
struct Swarm {
    docker: PathBuf,
    stack: String,
    image: String,
    client: String,
    /// Whether to leave the swarm at the end: this test or `scripts/swarm.sh` made it.
    leave: bool,
}

impl Swarm {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(&self.docker)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `docker ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {}:\n{}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Waits until `check` gives `Some`, polling; panics with `what` and the stack's tasks at
    /// the deadline.
    fn wait<T>(&self, what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = check() {
                return value;
            }
            if Instant::now() > deadline {
                let tasks = self.run(&[
                    "stack",
                    "ps",
                    &self.stack,
                    "--no-trunc",
                    "--format",
                    "{{.Name}} {{.CurrentState}} {{.Error}}",
                ]);
                panic!(
                    "{what}: not within {within:?}\ntasks:\n{}{}",
                    tasks.stdout, tasks.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the service `TYPE` runs `replicas` tasks, all of them running (and, for
    /// `web`, healthy).
    fn wait_replicas(&self, kind: &str, replicas: u32) {
        let service = format!("{}_{kind}", self.stack);
        let want = format!("{replicas}/{replicas}");
        self.wait(&format!("{service} at {want}"), CONVERGE, || {
            let out = self.run(&[
                "service",
                "ls",
                "--filter",
                &format!("name={service}"),
                "--format",
                "{{.Name}} {{.Replicas}}",
            ]);
            out.stdout
                .lines()
                .any(|l| l == format!("{service} {want}"))
                .then_some(())
        });
    }

    /// The logs of a service, without the task prefix.
    fn logs(&self, kind: &str) -> String {
        let service = format!("{}_{kind}", self.stack);
        let out = self.run(&["service", "logs", "--raw", &service]);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// The ids of the running containers of `TYPE`.
    fn containers(&self, kind: &str) -> Vec<String> {
        let label = format!("label=com.docker.swarm.service.name={}_{kind}", self.stack);
        self.ok(&["ps", "-q", "--filter", &label])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-f", &self.client]);
        let _ = self.run(&["stack", "rm", &self.stack]);
        // `stack rm` returns before the containers and the network are gone.
        let label = format!("label=com.docker.stack.namespace={}", self.stack);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let running = self.run(&["ps", "-q", "--filter", &label]);
            let networks = self.run(&["network", "ls", "-q", "--filter", &label]);
            if running.stdout.trim().is_empty() && networks.stdout.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // The release job's container stays when it completed; the image goes with it.
        let stopped = self.run(&["ps", "-aq", "--filter", &label]);
        for id in stopped.stdout.lines() {
            let _ = self.run(&["rm", "-f", id]);
        }
        let _ = self.run(&["rmi", "-f", &self.image]);
        if self.leave {
            let _ = self.run(&["swarm", "leave", "--force"]);
            // The bridge that gave the swarm's containers their way out.
            let _ = self.run(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// The directory the test image is imported from: `shoal-fake`, the libraries `ldd` names for
/// it, and busybox as `/bin/sh` and the tools the Procfile and the health check use.
fn image_root(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox");
    for applet in [
        "sh", "wget", "grep", "cat", "ls", "sleep", "date", "timeout", "touch", "echo", "seq",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let local = dir.join("usr/local/bin");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::copy(fake_bin(), local.join("shoal-fake")).unwrap();
    let ldd = Command::new("ldd").arg(fake_bin()).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) else {
            continue;
        };
        let target = dir.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(lib, &target).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
    for empty in ["tmp", "etc", "proc", "sys", "dev", "run"] {
        std::fs::create_dir_all(dir.join(empty)).unwrap();
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}

/// What the mark server saw: `set` when the release left its mark, `get:released` or
/// `get:missing` when a `web` instance asked for it.
type Events = Arc<Mutex<Vec<String>>>;

/// A backing service that stands for the database a release migrates: `GET /set` leaves the
/// mark — except the first time, which fails with 500 (`set:refused`), so that the first
/// release fails — and `GET /get` answers `released` once it is there (`missing` before). It listens on the
/// address of the Docker bridge on this machine, which the containers reach and nothing
/// outside does.
fn mark_server(host: &str) -> (String, Events) {
    let listener = TcpListener::bind((host, 0)).expect("bind the mark server");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let events: Events = Arc::default();
    let seen = events.clone();
    std::thread::spawn(move || {
        let mut released = false;
        let mut refused = false;
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let (status, body) = if request.starts_with("GET /set ") && !refused {
                refused = true;
                seen.lock().unwrap().push("set:refused".to_owned());
                ("500 Refused", "refused")
            } else if request.starts_with("GET /set ") {
                released = true;
                seen.lock().unwrap().push("set".to_owned());
                ("200 OK", "set")
            } else {
                let answer = if released { "released" } else { "missing" };
                seen.lock().unwrap().push(format!("get:{answer}"));
                ("200 OK", answer)
            };
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.0 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}\n",
                body.len() + 1
            );
        }
    });
    (url, events)
}

/// The IPv4 address of `docker0`, the bridge between the host and its containers: the
/// default bridge network's gateway as Docker reports it, else as `ip` shows it.
fn bridge_address(swarm: &Swarm) -> String {
    let gateway = swarm.run(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]);
    let gateway = gateway.stdout.trim();
    if gateway.parse::<std::net::Ipv4Addr>().is_ok() {
        return gateway.to_owned();
    }
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address for docker0 from Docker or `ip`: {text}"))
        .to_owned()
}

/// The command of a `next: …` line of `shoal export`, after `prefix`.
fn next_command(out: &Output, prefix: &str) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("next: ")?.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `next: {prefix}` in\n{}", out.stderr))
        .to_owned()
}

/// Runs a command `shoal export` printed, with `docker` being the CLI under test; panics
/// with its output if it fails or takes longer than `within`.
fn run_printed(docker: &Path, command: &str, within: Duration) {
    let (ok, output) = try_printed(docker, command, within);
    assert!(ok, "`{command}` failed:\n{output}");
}

/// Runs a command `shoal export` printed: whether it succeeded, and its output. Panics if it
/// takes longer than `within`.
fn try_printed(docker: &Path, command: &str, within: Duration) -> (bool, String) {
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(docker, bin.path().join("docker")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let output = format!(
                "{status}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status.success(), output);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`{command}` did not finish within {within:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn swarm_runs_the_formation() {
    let Some(docker) = docker_cli() else {
        return;
    };
    if std::env::var_os("SHOAL_TEST_SWARM").is_none() {
        eprintln!("NOT RUN: SHOAL_TEST_SWARM is not set; scripts/test (scripts/swarm.sh) sets it");
        return;
    }
    let started = Instant::now();
    let id = format!(
        "{:08x}",
        std::process::id() ^ (started.elapsed().subsec_nanos())
    );
    let mut swarm = Swarm {
        docker: docker.clone(),
        stack: format!("shoal-it-{id}"),
        image: format!("shoal-swarm-test:{id}"),
        client: format!("shoal-it-{id}-client"),
        leave: std::env::var_os("SHOAL_TEST_SWARM_LEAVE").is_some(),
    };
    let state = swarm.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if state.trim() != "active" {
        swarm.ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        swarm.leave = true;
    }
    let stack = swarm.stack.clone();

    // The image, from what the build made.
    let root = tempfile::tempdir().unwrap();
    image_root(root.path());
    let import = format!(
        "tar -C '{}' -c . | '{}' import -c 'ENV PATH=/usr/local/bin:/bin' - '{}'",
        root.path().display(),
        docker.display(),
        swarm.image
    );
    let out = Command::new("sh").args(["-c", &import]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The app: a release that leaves the mark, web that refuses to start without it and
    // answers with its instance name (having listed its scratch directory and written a file
    // there), a worker that prints the values it was given.
    let (mark_url, events) = mark_server(&bridge_address(&swarm));
    let app = App::new(
        "release: wget -q -O- \"$MARK_URL/set\"\nweb: wget -q -O- \"$MARK_URL/get\" | grep -qx released && shoal-fake scratch 0 && sleep 2 && exec shoal-fake serve\nworker: shoal-fake env GREETING API_KEY DATABASE_URL SHOAL_INSTANCE\n",
    );
    // Written as it is: `App::write` would replace the `FAKE` in `SHOAL_FAKE_HOST`.
    std::fs::write(
        app.path().join(".env"),
        format!(
            "MARK_URL={mark_url}\nSHOAL_FAKE_HOST=0.0.0.0\nGREETING='$HOME: {{{{.Task.Slot}}}} \"hi\"'\nAPI_KEY=\"it's a secret\"\nDATABASE_URL=postgres://app:hunter2@db.invalid/app\n"
        ),
    )
    .unwrap();
    let deploy = |formation: &str, extra: &[&str]| {
        let mut args = vec![
            "-o",
            "out",
            "--app",
            &stack,
            "--image",
            &swarm.image,
            "-m",
            formation,
            "--endpoint-mode",
            "dnsrr",
            "-t",
            "5",
            "--memory-limit",
            "web=64M",
        ];
        args.extend_from_slice(extra);
        let out = export(&app, &args);
        assert_ok(&out);
        out
    };

    eprintln!("{:>4.0?} the image is imported", started.elapsed());
    // The release runs to completion first, with the commands shoal printed. The first one
    // fails (the mark server refuses it): the commands stop there, saying so.
    let out = deploy("web=3,worker=1", &[]);
    let release = next_command(
        &out,
        "run the release and wait for it to complete (a failed release stops here): ",
    );
    let (ok, failed) = try_printed(&docker, &release, CONVERGE);
    assert!(!ok, "the refused release succeeded:\n{failed}");
    assert!(failed.contains("server returned error"), "{failed}");
    assert_eq!(*events.lock().unwrap(), ["set:refused"]);
    // Run again, the same commands replace the failed job and wait for the new one.
    run_printed(&docker, &release, CONVERGE);
    let tasks = swarm.ok(&[
        "service",
        "ps",
        &format!("{stack}_release"),
        "--format",
        "{{.CurrentState}}",
    ]);
    assert!(tasks.starts_with("Complete"), "{tasks}");
    assert_eq!(*events.lock().unwrap(), ["set:refused", "set"]);

    run_printed(
        &docker,
        &next_command(&out, "deploy the formation: "),
        CONVERGE,
    );
    swarm.wait_replicas("web", 3);
    swarm.wait_replicas("worker", 1);
    let limit = swarm.ok(&[
        "service",
        "inspect",
        &format!("{stack}_web"),
        "--format",
        "{{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}}",
    ]);
    assert_eq!(limit.trim(), (64 << 20).to_string(), "web's memory limit");
    {
        let events = events.lock().unwrap();
        assert_eq!(events[..2], ["set:refused", "set"]);
        assert!(
            events[2..].iter().all(|e| e == "get:released"),
            "{events:?}"
        );
        assert!(events.len() >= 5, "every web instance asked: {events:?}");
    }

    eprintln!(
        "{:>4.0?} the release completed and the formation converged",
        started.elapsed()
    );
    // The values arrive as `.env` has them, the secret ones through the Docker secret.
    let worker = swarm.wait("the worker's values in its log", CONVERGE, || {
        let logs = swarm.logs("worker");
        logs.contains("SHOAL_INSTANCE=").then_some(logs)
    });
    for line in [
        "GREETING=$HOME: {{.Task.Slot}} \"hi\"",
        "API_KEY=it's a secret",
        "DATABASE_URL=postgres://app:hunter2@db.invalid/app",
        "SHOAL_INSTANCE=worker.1",
    ] {
        assert!(worker.lines().any(|l| l == line), "{line} not in\n{worker}");
    }

    // Requests from a container on the stack's network reach every web replica, each with its
    // own name.
    let network = format!("{stack}_default");
    let answers = swarm.ok(&[
        "run",
        "--rm",
        "--network",
        &network,
        &swarm.image,
        "sh",
        "-c",
        "for i in $(seq 1 90); do wget -q -O- http://web:5000/; done",
    ]);
    let names: BTreeSet<&str> = answers.lines().collect();
    assert_eq!(
        names,
        BTreeSet::from(["web.1", "web.2", "web.3"]),
        "{answers}"
    );

    // A restarted instance starts with an empty scratch directory: kill one container; swarm
    // starts its slot again.
    let victim = swarm.containers("web")[0].clone();
    let left = swarm.ok(&["exec", &victim, "ls", "/shoal/scratch"]);
    assert!(left.contains("left-by-"), "web wrote into scratch: {left}");
    swarm.ok(&["kill", &victim]);
    swarm.wait("a new web task after the kill", CONVERGE, || {
        let running = swarm.containers("web");
        (running.len() == 3 && !running.contains(&victim)).then_some(())
    });
    swarm.wait_replicas("web", 3);
    let scratch = swarm.wait("four scratch listings", CONVERGE, || {
        let logs = swarm.logs("web");
        let lines: Vec<String> = logs
            .lines()
            .filter(|l| l.starts_with("scratch had: "))
            .map(str::to_owned)
            .collect();
        (lines.len() >= 4).then_some(lines)
    });
    assert!(
        scratch.iter().all(|l| l == "scratch had: (empty)"),
        "{scratch:?}"
    );

    eprintln!(
        "{:>4.0?} every replica answered; a killed one came back with an empty scratch directory",
        started.elapsed()
    );
    // A forced rolling update under steady load fails no request.
    let load = "ok=0; fail=0; while [ ! -e /tmp/stop ]; do if timeout 10 wget -q -O /dev/null http://web:5000/; then ok=$((ok+1)); else fail=$((fail+1)); fi; [ $((ok % 100)) = 1 ] && echo progress; done; echo ok=$ok fail=$fail";
    swarm.ok(&[
        "run",
        "-d",
        "--name",
        &swarm.client,
        "--network",
        &network,
        &swarm.image,
        "sh",
        "-c",
        load,
    ]);
    swarm.wait("the load client's first requests", CONVERGE, || {
        let out = swarm.run(&["logs", &swarm.client]);
        out.stdout.contains("progress").then_some(())
    });
    let before: BTreeSet<String> = swarm.containers("web").into_iter().collect();
    let update = swarm.run(&[
        "service",
        "update",
        "--force",
        "--detach=false",
        &format!("{stack}_web"),
    ]);
    assert!(
        update.status.success(),
        "{}{}",
        update.stdout,
        update.stderr
    );
    let update_state = swarm.ok(&[
        "service",
        "inspect",
        &format!("{stack}_web"),
        "--format",
        "{{.UpdateStatus.State}}",
    ]);
    assert_eq!(update_state.trim(), "completed", "not rolled back");
    swarm.wait_replicas("web", 3);
    swarm.wait("every replica replaced", CONVERGE, || {
        let running = swarm.containers("web");
        (running.len() == 3 && running.iter().all(|c| !before.contains(c))).then_some(())
    });
    swarm.ok(&["exec", &swarm.client, "touch", "/tmp/stop"]);
    swarm.ok(&["wait", &swarm.client]);
    let counts = swarm.ok(&["logs", &swarm.client]);
    let last = counts.lines().last().unwrap_or_default();
    let (ok, fail) = last
        .strip_prefix("ok=")
        .and_then(|rest| rest.split_once(" fail="))
        .unwrap_or_else(|| panic!("no counts from the client: {counts}"));
    let (ok, fail): (u64, u64) = (ok.parse().unwrap(), fail.parse().unwrap());
    assert_eq!(fail, 0, "{ok} requests answered, {fail} failed");
    assert!(ok > 100, "{ok} requests answered");
    eprintln!("rolling update under load: {ok} requests, none failed");

    eprintln!("{:>4.0?} the rolling update is done", started.elapsed());
    // Scaling: export with another formation and deploy again; with a health path, the new
    // tasks pass the HTTP check (busybox's wget in the image) or the update would roll back.
    let out = deploy("web=2,worker=0", &["--health-path", "/health"]);
    assert!(!out.stdout.contains("removed"), "{}", out.stdout);
    run_printed(
        &docker,
        &next_command(&out, "deploy the formation: "),
        CONVERGE,
    );
    swarm.wait_replicas("worker", 0);
    let web = format!("{stack}_web");
    let state = swarm.wait("the update to web=2 with a health path", CONVERGE, || {
        let state = swarm.ok(&[
            "service",
            "inspect",
            &web,
            "--format",
            "{{.UpdateStatus.State}}",
        ]);
        let state = state.trim().to_owned();
        (!state.is_empty() && state != "updating" && state != "rollback_started").then_some(state)
    });
    assert_eq!(state, "completed", "the new health check failed");
    let check = swarm.ok(&[
        "service",
        "inspect",
        &web,
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck.Test}}",
    ]);
    assert!(check.contains("wget -q -O /dev/null"), "{check}");
    swarm.wait_replicas("web", 2);

    eprintln!(
        "{:>4.0?} scaled to web=2, worker=0, with the HTTP health check",
        started.elapsed()
    );
    drop(swarm);
    eprintln!(
        "{:>4.0?} everything removed: the swarm test took that long",
        started.elapsed()
    );
}
