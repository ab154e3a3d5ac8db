//! Controllable fake children for shoal's integration tests. Each mode behaves in one way a
//! real app can, so that tests can provoke it on purpose. Not shipped.
//!
//! ```text
//! shoal-fake sleep [TOKEN]         print `up`, then sleep; SIGTERM kills it
//! shoal-fake graceful [MS] [FILE]  print `up` (and create FILE); on SIGTERM print
//!                                  `got SIGTERM`, wait MS, exit 0
//! shoal-fake ignore-term [TOKEN]   ignore SIGTERM, print `ignoring SIGTERM`, sleep
//! shoal-fake exit CODE             print `exiting with CODE`, exit CODE
//! shoal-fake env KEY...            print `KEY=VALUE` (or `KEY is unset`) for each, then sleep
//! shoal-fake ids                   print `pid=… pgid=… ppid=…`, then sleep
//! shoal-fake flood N [TAG]         print N numbered lines as fast as possible, then sleep
//! shoal-fake partial               print `no newline at the end` without a newline, exit 3
//! shoal-fake serve [STATUS]        answer HTTP on 127.0.0.1:$PORT with `$SHOAL_INSTANCE`
//!                                  (and status STATUS, 200 by default); on
//!                                  $SHOAL_FAKE_HOST:$PORT instead when that is set
//!                                  (`0.0.0.0` in a container)
//! shoal-fake serve6 [STATUS]       the same on [::1]:$PORT only (as Node's
//!                                  `listen(port, 'localhost')` may)
//! shoal-fake scratch [EXIT]        list $SHOAL_SCRATCH, write a file there, exit EXIT or sleep
//! shoal-fake spawn TOKEN           start `sleep TOKEN` and `ignore-term TOKEN` children, wait
//! shoal-fake hog [TOKEN] [MIB]     serve as `serve` does; `GET /alloc/N` allocates N MiB more
//!                                  (every page touched) and keeps it; MIB: as many at start
//! ```
//! TOKEN only marks the process's command line, so a test can find survivors in `/proc`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, ExitCode};
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("sleep") => {
            say("up");
            sleep_forever()
        }
        Some("graceful") => graceful(arg(1).and_then(|ms| ms.parse().ok()).unwrap_or(0), arg(2)),
        Some("ignore-term") => {
            // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            say("ignoring SIGTERM");
            sleep_forever()
        }
        Some("exit") => {
            let code: u8 = arg(1).and_then(|c| c.parse().ok()).unwrap_or(1);
            say(&format!("exiting with {code}"));
            ExitCode::from(code)
        }
        Some("env") => {
            for key in &args[1..] {
                match std::env::var(key) {
                    Ok(value) => say(&format!("{key}={value}")),
                    Err(_) => say(&format!("{key} is unset")),
                }
            }
            sleep_forever()
        }
        Some("ids") => {
            // SAFETY: these calls only read the process's own ids.
            let (pid, pgid, ppid) = unsafe { (libc::getpid(), libc::getpgrp(), libc::getppid()) };
            say(&format!("pid={pid} pgid={pgid} ppid={ppid}"));
            sleep_forever()
        }
        Some("flood") => {
            let count: u64 = arg(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
            let tag = arg(2).unwrap_or("line");
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
            for i in 1..=count {
                let _ = writeln!(
                    out,
                    "{tag} {i} of {count} with some padding to look like a log line"
                );
            }
            let _ = out.flush();
            drop(out);
            sleep_forever()
        }
        Some("partial") => {
            print!("no newline at the end");
            let _ = std::io::stdout().flush();
            ExitCode::from(3)
        }
        Some("serve") => serve(
            &std::env::var("SHOAL_FAKE_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned()),
            arg(1).and_then(|s| s.parse().ok()).unwrap_or(200),
        ),
        Some("serve6") => serve("[::1]", arg(1).and_then(|s| s.parse().ok()).unwrap_or(200)),
        Some("hog") => hog(arg(2).and_then(|mib| mib.parse().ok()).unwrap_or(0)),
        Some("scratch") => scratch(arg(1).and_then(|c| c.parse().ok())),
        Some("spawn") => {
            let token = arg(1).unwrap_or("shoal-fake-token");
            let me = std::env::current_exe().expect("own path");
            let mut children: Vec<_> = ["sleep", "ignore-term"]
                .iter()
                .map(|mode| {
                    Command::new(&me)
                        .args([mode, token])
                        .spawn()
                        .expect("spawn grandchild")
                })
                .collect();
            say(&format!(
                "spawned {}",
                children
                    .iter()
                    .map(|c| c.id().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            for child in &mut children {
                let _ = child.wait();
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: shoal-fake MODE [ARGS] (see the source for modes)");
            ExitCode::from(64)
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn graceful(delay_ms: u64, up_file: Option<&str>) -> ExitCode {
    // SAFETY: plain signal-mask calls on a zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        say("up");
        if let Some(file) = up_file {
            let _ = std::fs::write(file, "up");
        }
        let mut signal = 0;
        libc::sigwait(&set, &mut signal);
    }
    say("got SIGTERM");
    std::thread::sleep(Duration::from_millis(delay_ms));
    say("bye");
    ExitCode::SUCCESS
}

fn serve(host: &str, status: u16) -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_default();
    let name = std::env::var("SHOAL_INSTANCE").unwrap_or_default();
    let listener = match TcpListener::bind(format!("{host}:{port}")) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on port {port}: {err}");
            return ExitCode::from(1);
        }
    };
    say(&format!("listening on {port}"));
    for stream in listener.incoming().flatten() {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let body = format!("{name}\n");
        let _ = write!(
            reader.get_mut(),
            "HTTP/1.1 {status} Status\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    ExitCode::SUCCESS
}

/// Serves HTTP on 127.0.0.1:$PORT; `GET /alloc/N` allocates N MiB more and keeps them, and
/// the answer says how many it holds in all. `at_start` MiB are allocated before listening.
fn hog(at_start: usize) -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_default();
    let listener = match TcpListener::bind(format!("127.0.0.1:{port}")) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on port {port}: {err}");
            return ExitCode::from(1);
        }
    };
    // Non-zero bytes: every page is written, so it is resident.
    let mut held: Vec<Vec<u8>> = vec![vec![1u8; at_start << 20]];
    say(&format!("listening on {port}, holding {at_start} MiB"));
    for stream in listener.incoming().flatten() {
        let mut reader = BufReader::new(stream);
        let mut request = String::new();
        let _ = reader.read_line(&mut request);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        if let Some(mib) = path
            .strip_prefix("/alloc/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            held.push(vec![1u8; mib << 20]);
            say(&format!(
                "holding {} MiB",
                held.iter().map(Vec::len).sum::<usize>() >> 20
            ));
        }
        let body = format!("{} MiB\n", held.iter().map(Vec::len).sum::<usize>() >> 20);
        let _ = write!(
            reader.get_mut(),
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    ExitCode::SUCCESS
}

fn scratch(exit: Option<u8>) -> ExitCode {
    let dir = std::env::var("SHOAL_SCRATCH").unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    say(&format!(
        "scratch had: {}",
        if names.is_empty() {
            "(empty)".to_owned()
        } else {
            names.join(",")
        }
    ));
    let marker = std::path::Path::new(&dir).join(format!("left-by-{}", std::process::id()));
    match std::fs::write(&marker, "state") {
        Ok(()) => say("wrote a file"),
        Err(err) => say(&format!("cannot write {}: {err}", marker.display())),
    }
    match exit {
        Some(code) => ExitCode::from(code),
        None => sleep_forever(),
    }
}
