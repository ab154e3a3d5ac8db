//! `shoal run`: one command with the environment a formation instance gets, in the foreground,
//! passing its exit code through (foreman's `run`).
//!
//! The command stays in shoal's process group so it can use the terminal: the terminal's
//! Ctrl-C reaches it directly, so shoal does not send it again; SIGTERM and SIGHUP sent to
//! shoal are passed on.
//!
//! No orphans: shoal makes itself the subreaper of what the command starts, so a background
//! process that outlives the command is re-parented to shoal instead of init, and ended
//! (SIGTERM, then SIGKILL after `LEFTOVER_GRACE`) before shoal exits. The process group cannot
//! serve for this, since it is shoal's own.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use shoal_procfile::{InstanceName, Plan};
use shoal_supervisor::process::{self, Launch};
use shoal_supervisor::{Exit, RuntimeDir};
use tokio::signal::unix::{SignalKind, signal};

use super::{plan_options, runtime};
use crate::cli::RunArgs;
use crate::report::UsageError;

pub(crate) fn run(args: RunArgs) -> anyhow::Result<i32> {
    let options = plan_options(&args.app, None);
    // A Procfile is optional here: without one, only the .env files and the port apply. One
    // that exists must be valid.
    let plan = if args.app.procfile.is_none() && !options.procfile.exists() {
        Plan::without_procfile(&options)
    } else {
        Plan::load(&options)
    }
    .map_err(|err| UsageError(err.into()))?;

    let command = command_line(&plan, &args.command);
    let name = InstanceName::new("run", std::process::id());
    let runtime_dir = RuntimeDir::for_procfile(&plan.procfile);
    runtime_dir
        .create()
        .context("cannot prepare the runtime directory")?;
    let _lock = runtime_dir.lock_run()?;
    let scratch = runtime_dir
        .fresh_scratch(&name)
        .context("cannot prepare the scratch directory")?;
    let env = plan.instance_env(&name, plan.port, &scratch);

    become_subreaper();
    let rt = runtime()?;
    let result = rt.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        // Listening for SIGINT keeps shoal alive while the command handles the Ctrl-C.
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let launch = Launch {
            command: &command,
            dir: &plan.app_dir,
            env: &env,
            foreground: true,
            cgroup_procs: None,
        };
        let mut child = process::spawn(&launch)
            .await
            .with_context(|| format!("cannot start `{command}`"))?;
        let pid = child.id();
        loop {
            let forward = tokio::select! {
                status = child.wait() => return anyhow::Ok(Exit::from(status.context("cannot wait for the command")?)),
                _ = terminate.recv() => Some(libc::SIGTERM),
                _ = hangup.recv() => Some(libc::SIGHUP),
                _ = interrupt.recv() => None,
            };
            if let (Some(signal), Some(pid)) = (forward, pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, signal) };
            }
        }
    });
    let ended = end_leftovers(LEFTOVER_GRACE);
    if ended > 0 {
        eprintln!(
            "shoal run: ended {ended} background process{} that the command left running",
            if ended == 1 { "" } else { "es" }
        );
    }
    let _ = runtime_dir.remove_scratch(&name);
    runtime_dir.remove_unused();
    Ok(result?.shell_code())
}

/// How long background processes left by the command have between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// Makes orphans of the command's process tree shoal's children rather than init's.
fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Ends every process still parented to shoal once the command has exited: SIGTERM, then
/// SIGKILL for what is left after `grace`. Returns how many there were. A child's pid cannot
/// be reused before shoal reaps it, so signalling these pids never hits another process.
fn end_leftovers(grace: Duration) -> usize {
    let me = std::process::id();
    let mut ended = std::collections::BTreeSet::new();
    let deadline = Instant::now() + grace;
    loop {
        reap_children();
        let left = process::children_of(me);
        if left.is_empty() {
            break;
        }
        let signal = if Instant::now() < deadline {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        for &pid in &left {
            // A process re-parented here while others were ending gets SIGTERM first too.
            if ended.insert(pid) || signal == libc::SIGKILL {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, signal) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ended.len()
}

/// Reaps every child that has exited, without waiting for the others.
fn reap_children() {
    loop {
        // SAFETY: waitpid with a null status pointer is allowed and touches no memory.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

/// The shell command line for `shoal run ARGS`: a Procfile type's command, a single argument
/// as a shell command line (so `shoal run 'echo $PORT'` works), or several arguments quoted
/// as one program and its arguments.
fn command_line(plan: &Plan, args: &[String]) -> String {
    match args {
        [single] => plan
            .process_type(single)
            .map_or_else(|| single.clone(), |t| t.command.clone()),
        many => {
            let quoted: Vec<String> = many.iter().map(|a| shell_quote(a)).collect();
            format!("exec {}", quoted.join(" "))
        }
    }
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("rake"), "rake");
        assert_eq!(shell_quote("db:migrate"), "db:migrate");
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(""), "''");
    }
}
