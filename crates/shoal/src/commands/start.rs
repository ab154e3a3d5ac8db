//! `shoal start`: runs the formation in the foreground until interrupted.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shoal_control::metrics::MetricsServer;
use shoal_control::{ChaosSpec, ControlServer};
use shoal_router::{Router, RouterConfig};
use shoal_supervisor::{Log, Options, Outcome, RuntimeDir, Style, Supervisor, Watchdog};
use shoal_verify::isolate::{self, Isolation};
use tokio::signal::unix::{SignalKind, signal};

use super::{load_plan, plan_options, runtime};
use crate::cli::StartArgs;
use crate::report::UsageError;
use crate::{exit, report};

pub(crate) fn start(args: StartArgs) -> anyhow::Result<i32> {
    // First, while shoal has one thread: the kernel moves a thread alone into a namespace.
    let namespace = args.isolate.then(isolate::private_mounts);
    let mut plan = load_plan(&plan_options(&args.app, args.formation.clone()))?;
    let max_in_flight = in_flight_limit(&mut plan, args.router.max_in_flight)?;
    shoal_procfile::memory::apply(&mut plan, &args.memory_limits)
        .map_err(|err| UsageError(err.into()))?;
    if let Some(metrics) = args.metrics
        && plan.routed
        && metrics.port() == plan.port
    {
        return Err(UsageError(anyhow::anyhow!(
            "`--metrics {metrics}` is the formation's public port; metrics are served on a port of their own (e.g. `127.0.0.1:9100`)"
        ))
        .into());
    }
    for warning in &plan.warnings {
        report::warning(warning);
    }
    if let Some(text) = shoal_supervisor::ports::ephemeral_warning_for(&plan) {
        eprintln!("warning: {text}");
    }
    let runtime_dir = RuntimeDir::for_procfile(&plan.procfile);
    runtime_dir
        .create()
        .context("cannot prepare the formation's runtime directory")?;
    let _lock = runtime_dir.lock_formation()?;
    runtime_dir.sweep_stale();
    // shoal's own binary, in watchdog mode; `/proc/self/exe` still works if the file was
    // replaced since shoal started.
    let watchdog = Watchdog::start(Path::new("/proc/self/exe"), &["__watchdog"])
        .context("cannot start shoal's watchdog process")?;

    let color = !args.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal();
    let width = plan
        .instances()
        .iter()
        .map(|i| i.name.to_string().len())
        .chain(plan.release.as_ref().map(|_| "release.1".len()))
        .max()
        .unwrap_or(0);
    let (log, writer) = Log::start(Box::new(std::io::stdout()), Style { color }, width);
    let isolation = match &namespace {
        Some(namespace) => {
            let root = runtime_dir.path().join("isolate");
            let isolation = Isolation::new(&plan.app_dir, &root, namespace, log.clone())
                .with_context(|| {
                    format!("cannot prepare private copies in `{}`", root.display())
                })?;
            Some(isolation)
        }
        None => None,
    };
    let _remove_copies = isolation.as_ref().map(Isolation::finish_on_drop);
    let options = Options {
        grace: Duration::from_secs_f64(args.timeout),
        restart: !args.no_restart,
        watchdog: Some(Arc::new(watchdog)),
        health_path: args.router.health_path.clone(),
        boot_timeout: Duration::from_secs_f64(args.router.boot_timeout),
        work_dirs: isolation
            .clone()
            .map(|i| i as Arc<dyn shoal_supervisor::WorkDirs>),
        ..Options::default()
    };
    let router = plan.routed.then(|| RouterConfig {
        listen: SocketAddr::new(args.router.bind, plan.port),
        balance: args.router.balance,
        first_byte_timeout: Duration::from_secs_f64(args.router.request_timeout),
        header_timeout: Duration::from_secs_f64(args.router.header_timeout),
        body_timeout: Duration::from_secs_f64(args.router.body_timeout),
        max_connections: args.router.max_connections as usize,
        max_in_flight,
        queue_timeout: Duration::from_secs_f64(args.router.queue_timeout),
        max_queue: args.router.max_queue.map(|n| n as usize),
        ..RouterConfig::default()
    });

    let rt = runtime()?;
    let code = rt.block_on(supervise(
        plan,
        runtime_dir.clone(),
        log,
        options,
        router,
        Checks {
            chaos: args.chaos,
            isolation: isolation.clone(),
        },
        args.metrics,
    ));
    // Tasks still parked (none should be) must not hold the log open.
    rt.shutdown_timeout(Duration::from_secs(1));
    writer.finish_within(Duration::from_secs(5));
    if let Some(isolation) = &isolation {
        isolation.finish();
    }
    runtime_dir.remove_unused();
    code
}

/// The variable gunicorn, Puma and others size themselves by, and the default of
/// `--max-in-flight`.
const WEB_CONCURRENCY: &str = "WEB_CONCURRENCY";

/// The most requests the router sends a web instance at once: `--max-in-flight`, else
/// `WEB_CONCURRENCY` from the `.env` files, else from shoal's environment, else no limit. A
/// limit given with the flag reaches the web instances as `WEB_CONCURRENCY` (over the `.env`
/// files), so that the app sizes itself to what the router sends it.
fn in_flight_limit(
    plan: &mut shoal_procfile::Plan,
    flag: Option<u32>,
) -> anyhow::Result<Option<NonZeroUsize>> {
    if let Some(limit) = flag {
        if let Some(web) = plan
            .types
            .iter_mut()
            .find(|t| t.name == shoal_procfile::plan::WEB)
        {
            web.env
                .push((WEB_CONCURRENCY.to_owned(), limit.to_string()));
        }
        return Ok(NonZeroUsize::new(limit as usize));
    }
    let (value, source) = match plan.env.iter().rev().find(|v| v.key == WEB_CONCURRENCY) {
        Some(var) => (
            var.value.clone(),
            format!("{}:{}", var.file.display(), var.line),
        ),
        None => match std::env::var(WEB_CONCURRENCY) {
            Ok(value) => (value, "the environment".to_owned()),
            Err(_) => return Ok(None),
        },
    };
    match value.trim().parse::<NonZeroUsize>() {
        Ok(limit) => Ok(Some(limit)),
        Err(_) => Err(UsageError(anyhow::anyhow!(
            "`{WEB_CONCURRENCY}={value}` ({source}) is not a positive whole number; expected how many requests a web instance serves at once (or set `--max-in-flight`)"
        ))
        .into()),
    }
}

/// What finds state in the app during ordinary work: `--chaos` and `--isolate`.
struct Checks {
    chaos: Option<ChaosSpec>,
    isolation: Option<Arc<Isolation>>,
}

async fn supervise(
    plan: shoal_procfile::Plan,
    runtime_dir: RuntimeDir,
    log: Log,
    options: Options,
    router: Option<RouterConfig>,
    checks: Checks,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<i32> {
    // Listen before anything starts, so that an early Ctrl-C stops the formation in order.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;

    // Bind the public port before starting anything, so that a port in use is a clear error.
    let router = match router {
        Some(config) => Some(Router::bind(config, log.clone()).await?),
        None => None,
    };
    let metrics = match metrics {
        Some(addr) => Some(MetricsServer::bind(addr).await?),
        None => None,
    };
    let socket = runtime_dir.control_socket();
    let mut control = ControlServer::bind(&socket)
        .with_context(|| format!("cannot listen on the control socket `{}`", socket.display()))?;
    if let Some(isolation) = checks.isolation.clone() {
        control = control.with_local_writes(Arc::new(move |name| isolation.local_writes(name)));
    }
    let watching = checks
        .isolation
        .map(|isolation| tokio::spawn(isolation.watch()));
    let grace = options.grace;
    let plan = Arc::new(plan);
    let stats = router.as_ref().map(Router::stats);
    // A web instance over its memory limit is drained the way `shoal restart` drains one.
    let options = Options {
        until_idle: stats.clone().map(|stats| {
            Arc::new(shoal_control::RouterIdle(stats)) as Arc<dyn shoal_supervisor::UntilIdle>
        }),
        ..options
    };
    let (handle, task) = Supervisor::start(plan.clone(), runtime_dir, log.clone(), options);
    let (router_stop, router_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(router) = router {
        let snapshots = handle.watch();
        tokio::spawn(router.serve(snapshots, async move {
            let _ = router_stopped.await;
        }));
    }
    let metrics = metrics.map(|server| {
        if let Some(addr) = server.local_addr() {
            log.system(format!("serving metrics on http://{addr}/metrics"));
        }
        tokio::spawn(server.serve(handle.clone(), stats.clone(), std::future::pending()))
    });
    let control = tokio::spawn(control.serve(handle.clone(), plan, stats, grace));
    let chaos = checks
        .chaos
        .map(|spec| tokio::spawn(shoal_control::chaos::run(handle.clone(), spec, log.clone())));
    tokio::pin!(task);
    let mut stopped_by: Option<i32> = None;
    let outcome = loop {
        let signal = tokio::select! {
            outcome = &mut task => break outcome.context("the supervisor failed")?,
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
            _ = hangup.recv() => libc::SIGHUP,
        };
        let name = shoal_supervisor::exit::signal_name(signal);
        // `system` never waits, so a stalled stdout cannot delay the stop.
        if stopped_by.is_none() {
            stopped_by = Some(signal);
            log.system(format!(
                "received {name}; stopping the formation (send it again to kill at once)"
            ));
            handle.stop();
        } else {
            log.system(format!("received {name} again; killing the formation now"));
            handle.kill();
        }
    };
    let _ = router_stop.send(());
    if let Some(chaos) = chaos {
        chaos.abort();
    }
    if let Some(watching) = watching {
        watching.abort();
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    // Dropping the server task removes the socket file.
    control.abort();
    let _ = control.await;
    Ok(match outcome {
        Outcome::Stopped => stopped_by.map_or(exit::OK, exit::for_signal),
        Outcome::InstanceExited { exit, .. } | Outcome::ReleaseFailed { exit } => exit.shell_code(),
    })
}
