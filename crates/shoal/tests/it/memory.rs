//! `shoal start --memory-limit`: a warning above the limit, a restart at twice it — by the
//! kernel in a memory cgroup, or by shoal sampling resident memory (`SHOAL_NO_CGROUP=1`) —
//! with its cause in the log, in `ps` and in the metrics, and nothing left behind. The fake
//! instance (`shoal-fake hog`) allocates memory when asked over HTTP.

use crate::metrics::{get, promtool_check, sample, scrape_until};
use crate::support::{App, Running, assert_no_survivors, free_port, token};

/// Asks the instance on `port` to allocate `mib` MiB more.
fn allocate(port: u16, mib: u32) {
    // The answer does not matter: an instance killed meanwhile gives none.
    let _ = get(port, &format!("/alloc/{mib}"));
}

/// `name` in `shoal ps --json`.
fn ps_entry(app: &App, name: &str) -> serde_json::Value {
    let out = app.run(&["ps", "--json"]);
    let instances: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    instances
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or_default()
}

/// The restart, its cause in `ps` and in the metrics, for `web.1`.
fn restarted_for_memory(app: &App, shoal: &Running, metrics: u16) {
    shoal.wait_for("restarting web.1 in 100 ms (cause: memory limit)");
    let web = ps_entry(app, "web.1");
    assert_eq!(web["last_exit"], "memory limit", "{web}");
    assert_eq!(web["memory_limit_bytes"], 64 << 20, "{web}");
    let series =
        r#"shoal_instance_restarts_total{type="web",instance="web.1",cause="memory_limit"}"#;
    let text = scrape_until(metrics, "a memory restart counted", |text| {
        sample(text, series) == Some(1.0)
    });
    assert_eq!(
        sample(
            &text,
            r#"shoal_instance_memory_limit_bytes{type="web",instance="web.1"}"#
        ),
        Some(64.0 * 1024.0 * 1024.0),
        "{text}"
    );
    promtool_check(text.split_once("\r\n\r\n").map_or("", |(_, body)| body));
}

#[test]
fn over_the_limit_a_warning_at_twice_the_kernel_ends_it_and_it_restarts() {
    let token = token("memory-cgroup");
    let app = App::new(&format!("web: FAKE hog {token}\n"));
    let (port, metrics) = (free_port(), free_port());
    let shoal = app.spawn(&[
        "start",
        "-p",
        &port.to_string(),
        "--memory-limit",
        "256M",
        "--memory-limit",
        "web=64M",
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    let how = shoal.wait_for("memory limits: ");
    let Some(cgroup) = how
        .split_once("(memory cgroup `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(path, _)| std::path::PathBuf::from(path))
    else {
        eprintln!("NOT RUN: shoal may create no memory cgroup here: {how}");
        return;
    };
    shoal.wait_ready(1);
    let web = port + 100;
    allocate(web, 80);
    // The type's own limit wins over the one for every type.
    let warning = shoal.wait_for("web.1 is over its memory limit: ");
    assert!(warning.ends_with(" of 64 MiB"), "{warning}");
    assert!(cgroup.join("web.1").is_dir(), "{}", cgroup.display());
    // Past the cgroup's hard limit (160 MiB) at once: shoal's reading comes too late.
    allocate(web, 120);
    shoal.wait_for(
        "the kernel's OOM killer ended web.1 at 160 MiB, past twice its memory limit of 64 MiB",
    );
    restarted_for_memory(&app, &shoal, metrics);
    shoal.wait_ready(2);

    shoal.signal(libc::SIGTERM);
    let out = shoal.finish();
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    assert_no_survivors(&token);
    assert!(!cgroup.exists(), "`{}` was left behind", cgroup.display());
}

/// `web.1` grows past twice its limit of 64 MiB, but not past the cgroup's hard limit
/// (160 MiB): shoal's own reading finds it and drains it (web.2 is ready) before its restart,
/// whether it reads the instance's memory cgroup or, with `no_cgroup`, `/proc`.
fn drained_before_its_memory_restart(no_cgroup: bool) {
    let token = token("memory-drained");
    let app = App::new(&format!("web: FAKE hog {token}\n"));
    let (port, metrics) = (free_port(), free_port());
    let mut command = app.command(&[
        "start",
        "-p",
        &port.to_string(),
        "-m",
        "web=2",
        "--memory-limit",
        "web=64M",
        "--metrics",
        &format!("127.0.0.1:{metrics}"),
    ]);
    if no_cgroup {
        command.env("SHOAL_NO_CGROUP", "1");
    }
    let shoal = Running::spawn(command);
    let how = shoal.wait_for("memory limits: ");
    if no_cgroup {
        assert!(
            how.contains(
                "no memory cgroup shoal may create, so resident memory is sampled once a second"
            ),
            "{how}"
        );
    } else if !how.contains("(memory cgroup `") {
        eprintln!("NOT RUN: shoal may create no memory cgroup here: {how}");
        shoal.signal(libc::SIGTERM);
        shoal.finish();
        return;
    }
    shoal.wait_ready(2);
    let web = port + 100;
    allocate(web, 80);
    let warning = shoal.wait_for("web.1 is over its memory limit: ");
    assert!(warning.ends_with(" of 64 MiB"), "{warning}");
    allocate(web, 52);
    shoal.wait_for("web.1 uses ");
    restarted_for_memory(&app, &shoal, metrics);
    // Drained while web.2 was ready, then stopped: in that order; not by the kernel.
    let log = shoal.stdout();
    let at = |text: &str| {
        log.find(text)
            .unwrap_or_else(|| panic!("no `{text}` in:\n{log}"))
    };
    assert!(
        at("twice its memory limit of 64 MiB or more: restarting it") < at("web.1 is draining")
            && at("web.1 is draining") < at("stopping web.1: SIGTERM"),
        "{log}"
    );
    assert!(!log.contains("OOM killer"), "{log}");
    shoal.signal(libc::SIGTERM);
    shoal.finish();
    assert_no_survivors(&token);
}

#[test]
fn without_a_cgroup_shoal_samples_and_drains_a_web_instance_before_its_restart() {
    drained_before_its_memory_restart(true);
}

#[test]
fn in_a_cgroup_a_slowly_growing_web_instance_is_drained_before_the_kernel_ends_it() {
    drained_before_its_memory_restart(false);
}

/// A worker that holds three times its limit from the start is ended at twice it at every
/// start: its restarts back off like any crash (a memory restart does not reset the backoff),
/// whether shoal samples its memory (`no_cgroup`) or the kernel ends it in its cgroup.
fn outgrowing_at_every_start_backs_off(no_cgroup: bool) {
    let token = token("memory-backoff");
    let app = App::new(&format!("worker: FAKE hog {token} 192\n"));
    let port = free_port().to_string();
    let mut command = app.command(&["start", "-p", &port, "--memory-limit", "worker=64M"]);
    if no_cgroup {
        command.env("SHOAL_NO_CGROUP", "1");
    }
    let shoal = Running::spawn(command);
    let how = shoal.wait_for("memory limits: ");
    if !no_cgroup && !how.contains("(memory cgroup `") {
        eprintln!("NOT RUN: shoal may create no memory cgroup here: {how}");
        shoal.signal(libc::SIGTERM);
        shoal.finish();
        return;
    }
    for delay in ["100 ms", "200 ms", "400 ms"] {
        shoal.wait_for(&format!(
            "restarting worker.1 in {delay} (cause: memory limit)"
        ));
    }
    shoal.signal(libc::SIGTERM);
    shoal.finish();
    assert_no_survivors(&token);
}

#[test]
fn outgrowing_the_limit_at_every_start_backs_off_when_sampled() {
    outgrowing_at_every_start_backs_off(true);
}

#[test]
fn outgrowing_the_limit_at_every_start_backs_off_in_a_cgroup() {
    outgrowing_at_every_start_backs_off(false);
}

#[test]
fn bad_memory_limits_are_named_and_exit_2() {
    let app = App::new("web: FAKE serve\nworker: FAKE sleep\n");
    let out = app.run(&["start", "--memory-limit", "12X"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`12X` is not a memory size; expected a number with `K`, `M` or `G`"),
        "{}",
        out.stderr
    );
    let out = app.run(&["start", "--memory-limit", "wrker=1G"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "`--memory-limit wrker=…` names no process type of the Procfile; did you mean `worker`?"
        ),
        "{}",
        out.stderr
    );
    let out = app.run(&["start", "--memory-limit", "web=100K"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("`web=100K` is too small"),
        "{}",
        out.stderr
    );
}
