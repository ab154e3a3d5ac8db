//! The command line: every subcommand and flag, with the help text users read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run any app as a formation of stateless processes.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the formation in the foreground until interrupted
    Start(StartArgs),
    /// Validate the Procfile, .env files and formation, and print the resolved plan
    Check(CheckArgs),
    /// Run one command with the environment a formation instance gets
    Run(RunArgs),
    /// Write the formation as Kubernetes manifests, swarm stack files, systemd units or a compose file
    Export(ExportArgs),
    /// Show every instance of the running formation
    Ps(PsArgs),
    /// Change the number of instances of running process types, e.g. `web=5 worker=0`
    Scale(ScaleArgs),
    /// Restart instances one by one, each replacement ready before the old one stops
    Restart(TargetArgs),
    /// Stop a process type, one instance, or (without TARGET) the whole formation
    Stop(TargetArgs),
    /// Prove the app is stateless: replay scenarios against one long-lived instance, then against shuffled, restarting instances, and compare
    Verify(VerifyArgs),
    /// (internal) The guard process `shoal start` runs to clean up if it is killed
    #[command(name = "__watchdog", hide = true)]
    Watchdog,
}

/// Where the app and its configuration are.
#[derive(Debug, Args, Clone)]
pub(crate) struct AppArgs {
    /// The Procfile [default: Procfile in DIR, else in the current directory]
    #[arg(short = 'f', long, value_name = "FILE")]
    pub(crate) procfile: Option<PathBuf>,
    /// A .env file to read; repeat for several, later files win [default: .env in DIR, if present]
    #[arg(short = 'e', long = "env", value_name = "FILE")]
    pub(crate) env_files: Vec<PathBuf>,
    /// The directory instances run in [default: the Procfile's directory]
    #[arg(short = 'd', long = "directory", value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The formation's port: instances get PORT from here up [default: PORT from .env, else from the environment, else 5000]
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// How many instances of each type run, e.g. `web=3,worker=2` or `all=2,worker=0` [default: all=1]
    #[arg(short = 'm', long, value_name = "SPEC")]
    pub(crate) formation: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub(crate) timeout: f64,
    /// Do not restart instances that exit: the first exit stops the formation, and shoal exits with that instance's code
    #[arg(long)]
    pub(crate) no_restart: bool,
    /// Never colour the output (NO_COLOR is also honoured)
    #[arg(long)]
    pub(crate) no_color: bool,
    /// Kill a random instance with SIGKILL about every PERIOD, as production does (`--chaos` alone: `kill=10s`)
    #[arg(long, value_name = "kill=PERIOD[,wipe]", num_args = 0..=1, default_missing_value = "", require_equals = true, value_parser = parse_chaos)]
    pub(crate) chaos: Option<shoal_control::ChaosSpec>,
    /// Run each instance in a private copy of the app directory, made afresh at every start (copy-on-write where the kernel allows), and report its first writes there
    #[arg(long)]
    pub(crate) isolate: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. `127.0.0.1:9100` (never on the public port)
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Bound each instance's memory: SIZE for every type, TYPE=SIZE for one (repeatable; e.g. `512M`, `web=1G`). A warning above the limit; at twice it the kernel (a memory cgroup) or shoal (sampling once a second) ends the instance and it restarts
    #[arg(long = "memory-limit", value_name = "[TYPE=]SIZE", value_parser = parse_memory_limit)]
    pub(crate) memory_limits: Vec<shoal_procfile::memory::MemoryLimit>,
    #[command(flatten)]
    pub(crate) router: RouterArgs,
}

fn parse_memory_limit(text: &str) -> Result<shoal_procfile::memory::MemoryLimit, String> {
    shoal_procfile::memory::MemoryLimit::parse(text).map_err(|err| err.to_string())
}

fn parse_chaos(text: &str) -> Result<shoal_control::ChaosSpec, String> {
    shoal_control::ChaosSpec::parse(text)
}

/// How a control command finds the running formation.
#[derive(Debug, Args, Clone)]
pub(crate) struct FormationArgs {
    /// The formation's Procfile [default: Procfile in DIR, else in the current directory]
    #[arg(short = 'f', long, value_name = "FILE")]
    pub(crate) procfile: Option<PathBuf>,
    /// The directory of the Procfile, when -f is not given
    #[arg(short = 'd', long = "directory", value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The control socket, instead of the one of the Procfile's formation
    #[arg(long, value_name = "PATH", env = "SHOAL_SOCKET")]
    pub(crate) socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    #[command(flatten)]
    pub(crate) formation: FormationArgs,
    /// Print JSON (the control protocol's `instances`)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ScaleArgs {
    #[command(flatten)]
    pub(crate) formation: FormationArgs,
    /// `TYPE=COUNT` items, e.g. `web=5 worker=0`
    #[arg(required = true, value_name = "TYPE=COUNT")]
    pub(crate) counts: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    pub(crate) formation: FormationArgs,
    /// A process type (`web`) or an instance (`web.2`); everything when left out
    #[arg(value_name = "TARGET")]
    pub(crate) target: Option<String>,
}

/// The router in front of `web` instances.
#[derive(Debug, Args)]
#[command(next_help_heading = "Router (when the Procfile has `web`)")]
pub(crate) struct RouterArgs {
    /// How each request picks a ready web instance: p2c (two random, fewer in flight), round-robin or random
    #[arg(long, value_name = "POLICY", default_value = "p2c")]
    pub(crate) balance: shoal_router::Balance,
    /// A path that must answer 2xx to GET before a web instance gets traffic (on top of its port accepting connections)
    #[arg(long, value_name = "PATH", value_parser = parse_health_path)]
    pub(crate) health_path: Option<String>,
    /// Seconds a web instance may take to become ready before it is restarted
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    pub(crate) boot_timeout: f64,
    /// The address the public port listens on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub(crate) bind: std::net::IpAddr,
    /// Seconds an instance has to send its response head (then 504); retries happen within it
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub(crate) request_timeout: f64,
    /// Seconds a client has to send a request head, from connecting or from the end of the previous response (also the idle keep-alive timeout)
    #[arg(long, value_name = "SECS", default_value_t = 15.0, value_parser = parse_seconds)]
    pub(crate) header_timeout: f64,
    /// Seconds a client may go without sending a byte of a request body it announced (then 408 and the connection is closed)
    #[arg(long, value_name = "SECS", default_value_t = 15.0, value_parser = parse_seconds)]
    pub(crate) body_timeout: f64,
    /// Requests each web instance is sent at once; more wait in the router's one queue [default: `WEB_CONCURRENCY` from the .env files or the environment, else no limit]. Web instances get it as `WEB_CONCURRENCY`
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_in_flight: Option<u32>,
    /// Seconds a request may wait in the router's queue for a free slot (then 503 `queue_timeout`)
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub(crate) queue_timeout: f64,
    /// Requests that may wait in the router's queue; beyond, 503 `queue_full` at once [default: 32 for each slot: 32 × web instances × --max-in-flight]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_queue: Option<u32>,
    /// Client connections served at once; more wait to be accepted
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// Scenarios to replay: `.http` files (VS Code REST Client / JetBrains format) or `.har` files
    #[arg(required = true, value_name = "SCENARIO")]
    pub(crate) scenarios: Vec<PathBuf>,
    /// The formation of the shuffled rounds, e.g. `web=3,worker=1`; the baseline runs one web instance, and one of every other type `-m` does not name [default: web=3, two of every other type]
    #[arg(short = 'm', long, value_name = "SPEC")]
    pub(crate) formation: Option<String>,
    /// How many shuffled rounds to replay the scenarios in
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) rounds: u32,
    /// The seed of the shuffled rounds (which instance serves each request, which are restarted); the report prints it [default: random]
    #[arg(long, value_name = "S")]
    pub(crate) seed: Option<u64>,
    /// Also write the report as JSON to FILE (`-`: print it instead of the text report)
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Also write the report as JUnit XML to FILE, for CI
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Write everything the instances print to FILE (by default only their last lines are shown, on errors)
    #[arg(long, value_name = "FILE")]
    pub(crate) log: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when an instance is stopped
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub(crate) timeout: f64,
    /// A path that must answer 2xx to GET before a web instance gets requests
    #[arg(long, value_name = "PATH", value_parser = parse_health_path)]
    pub(crate) health_path: Option<String>,
    /// Seconds a web instance may take to become ready; then verify stops with an error
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    pub(crate) boot_timeout: f64,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// How many instances of each type run, e.g. `web=3,worker=2` [default: all=1]
    #[arg(short = 'm', long, value_name = "SPEC")]
    pub(crate) formation: Option<String>,
    /// Print the plan as JSON (schema in the README)
    #[arg(long)]
    pub(crate) json: bool,
    /// Treat every warning as an error (for CI)
    #[arg(long)]
    pub(crate) strict: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// The command: a Procfile process type, one shell command line, or a program and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<String>,
}

fn parse_health_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a path; expected something like `/health`"
        ))
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0 to 86400"
        )),
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// What to write
    #[arg(value_enum, value_name = "FORMAT")]
    pub(crate) format: ExportFormat,
    #[command(flatten)]
    pub(crate) app: AppArgs,
    /// How many instances of each type run, e.g. `web=3,worker=2` [default: all=1]
    #[arg(short = 'm', long, value_name = "SPEC")]
    pub(crate) formation: Option<String>,
    /// The directory to write into; created when missing
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub(crate) output: PathBuf,
    /// The app's name in the exported files [default: the app directory's name]
    #[arg(long = "app", value_name = "NAME")]
    pub(crate) app_name: Option<String>,
    /// The container image the app is built into (kubernetes, swarm: required; compose: builds the app directory without it)
    #[arg(long, value_name = "IMAGE")]
    pub(crate) image: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when an instance stops
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub(crate) timeout: f64,
    /// A path that answers 2xx once a web instance is ready (kubernetes, swarm) [default: a TCP check on its port]
    #[arg(long, value_name = "PATH")]
    pub(crate) health_path: Option<String>,
    /// How swarm services reach web's replicas: vip (one address, the port published through the routing mesh) or dnsrr (the name resolves to every replica, no port published) [default: vip]
    #[arg(long, value_enum, value_name = "MODE")]
    pub(crate) endpoint_mode: Option<EndpointMode>,
    /// Add a HorizontalPodAutoscaler for web, from the formation's web count up (kubernetes)
    #[arg(long)]
    pub(crate) hpa: bool,
    /// The most web replicas the autoscaler runs [default: 4 times the web count, at least 2]
    #[arg(long, value_name = "N", requires = "hpa", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) hpa_max: Option<u32>,
    /// The average CPU use, in percent of the request, the autoscaler aims at
    #[arg(long, value_name = "PERCENT", default_value_t = 70, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) hpa_cpu: u32,
    /// Overwrite files in DIR that shoal export did not write
    #[arg(long)]
    pub(crate) force: bool,
    /// Bound each instance's memory as `shoal start --memory-limit` does: SIZE for every type, TYPE=SIZE for one (repeatable); Kubernetes limits and requests, systemd MemoryMax=, swarm and compose deploy.resources.limits
    #[arg(long = "memory-limit", value_name = "[TYPE=]SIZE", value_parser = parse_memory_limit)]
    pub(crate) memory_limits: Vec<shoal_procfile::memory::MemoryLimit>,
}

/// The formats `shoal export` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// Deployments, a Service, a ConfigMap and Secret, a release Job (kubectl apply -f DIR)
    #[value(alias = "k8s")]
    Kubernetes,
    /// Stack files for docker stack deploy: a service per process type, a release job, a secret
    Swarm,
    /// A target and a service per instance, as foreman exports them
    Systemd,
    /// A compose.yaml with a service per process type, for docker compose on one host
    #[value(alias = "docker-compose")]
    Compose,
}

/// How swarm services reach `web`'s replicas.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum EndpointMode {
    Vip,
    Dnsrr,
}
