//! `shoal ps`, `scale`, `restart` and `stop`: requests to a running formation over its control
//! socket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::anyhow;
use shoal_control::{Client, ClientError, InstanceStatus, Request, RequestError, Response};
use shoal_procfile::formation::Spec;
use shoal_supervisor::RuntimeDir;

use super::runtime;
use crate::cli::{FormationArgs, PsArgs, ScaleArgs, TargetArgs};
use crate::exit;
use crate::report::UsageError;

/// The control socket of the formation the flags name.
fn socket(args: &FormationArgs) -> PathBuf {
    if let Some(socket) = &args.socket {
        return socket.clone();
    }
    let procfile = match (&args.procfile, &args.dir) {
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => dir.join("Procfile"),
        (None, None) => PathBuf::from("Procfile"),
    };
    let procfile = std::path::absolute(&procfile).unwrap_or(procfile);
    RuntimeDir::for_procfile(&procfile).control_socket()
}

/// Sends one request; a refused request is an error (exit 2 when the request was wrong).
fn ask(args: &FormationArgs, request: &Request) -> anyhow::Result<Response> {
    let path = socket(args);
    let response = runtime()?.block_on(async {
        let mut client = Client::connect(&path).await?;
        client.ask(request).await
    });
    match response {
        Ok(response) => Ok(response),
        Err(err @ (ClientError::NotRunning { .. } | ClientError::Stale { .. })) => {
            Err(NotRunning(err).into())
        }
        Err(ClientError::Refused(err @ RequestError::Usage(_))) => {
            Err(UsageError(err.into()).into())
        }
        Err(ClientError::Refused(err)) => Err(err.into()),
        Err(err) => Err(err.into()),
    }
}

/// No formation is running: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct NotRunning(ClientError);

pub(crate) fn ps(args: PsArgs) -> anyhow::Result<i32> {
    let response = ask(&args.formation, &Request::Ps)?;
    let instances = response.instances.unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&instances)?);
    } else {
        print!("{}", table(&instances));
    }
    Ok(exit::OK)
}

/// Resident memory as `ps` shows it: MiB below 10 GiB, else GiB.
fn memory(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib < 10.0 * 1024.0 {
        format!("{mib:.1}M")
    } else {
        format!("{:.1}G", mib / 1024.0)
    }
}

fn table(instances: &[InstanceStatus]) -> String {
    let headers = [
        "NAME",
        "PID",
        "PORT",
        "STATE",
        "UPTIME",
        "RESTARTS",
        "IN-FLIGHT",
        "SERVED",
        "CPU",
        "MEM",
        "LAST EXIT",
    ];
    let rows: Vec<[String; 11]> = instances
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.pid.map_or("-".into(), |p| p.to_string()),
                i.port.to_string(),
                i.state.clone(),
                i.uptime_secs.map_or("-".into(), uptime),
                i.restarts.to_string(),
                match i.max_in_flight {
                    Some(limit) => format!("{}/{limit}", i.in_flight),
                    None => i.in_flight.to_string(),
                },
                i.served.to_string(),
                i.cpu_percent.map_or("-".into(), |p| format!("{p:.0}%")),
                i.memory_bytes.map_or("-".into(), memory),
                i.last_exit.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([headers[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if let Some((limit, queued)) = instances
        .iter()
        .find_map(|i| Some((i.max_in_flight?, i.queued?)))
    {
        let _ = writeln!(
            out,
            "queue: {queued} waiting for a free slot (at most {limit} in flight per web instance)"
        );
    }
    let writers: Vec<String> = instances
        .iter()
        .filter_map(|i| Some((&i.name, i.local_writes?)))
        .filter(|&(_, count)| count > 0)
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    if !writers.is_empty() {
        let _ = writeln!(
            out,
            "files written in copies of the app directory (--isolate): {}",
            writers.join(", ")
        );
    }
    out
}

fn uptime(secs: f64) -> String {
    let secs = secs as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

pub(crate) fn scale(args: ScaleArgs) -> anyhow::Result<i32> {
    let spec = Spec::parse(&args.counts.join(" ")).map_err(|err| UsageError(err.into()))?;
    if spec.all.is_some() {
        return Err(UsageError(anyhow!(
            "`all=` is not accepted by `shoal scale`; name each type, e.g. `web=3 worker=1`"
        ))
        .into());
    }
    let counts: BTreeMap<String, u32> = spec.counts.into_iter().collect();
    let response = ask(&args.formation, &Request::Scale { counts })?;
    println!("{}", response.message.unwrap_or_default());
    Ok(exit::OK)
}

pub(crate) fn restart(args: TargetArgs) -> anyhow::Result<i32> {
    let response = ask(
        &args.formation,
        &Request::Restart {
            target: args.target,
        },
    )?;
    println!("{}", response.message.unwrap_or_default());
    Ok(exit::OK)
}

pub(crate) fn stop(args: TargetArgs) -> anyhow::Result<i32> {
    let response = ask(
        &args.formation,
        &Request::Stop {
            target: args.target,
        },
    )?;
    println!("{}", response.message.unwrap_or_default());
    Ok(exit::OK)
}
