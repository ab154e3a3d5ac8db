//! `shoal export`: writes the formation as Kubernetes manifests, swarm stack files, systemd
//! units or a compose file, and prints what it wrote. The translation lives in `shoal-export`;
//! this command picks the options, reports warnings and next steps on stderr, and maps errors
//! to exit codes.

use std::time::Duration;

use anyhow::anyhow;
use shoal_export::{EndpointMode, Format, Hpa, Options};

use super::{load_plan, plan_options};
use crate::cli::{self, ExportArgs, ExportFormat};
use crate::exit;
use crate::report::{self, UsageError};

pub(crate) fn export(args: ExportArgs) -> anyhow::Result<i32> {
    let format = match args.format {
        ExportFormat::Kubernetes => Format::Kubernetes,
        ExportFormat::Systemd => Format::Systemd,
        ExportFormat::Compose => Format::Compose,
        ExportFormat::Swarm => Format::Swarm,
    };
    if args.hpa && format != Format::Kubernetes {
        return Err(UsageError(anyhow!(
            "--hpa adds a Kubernetes HorizontalPodAutoscaler; {format} has none"
        ))
        .into());
    }
    // The target platform fronts the web instances itself: no router, so no port shift.
    let options = shoal_procfile::PlanOptions {
        without_router: true,
        ..plan_options(&args.app, args.formation.clone())
    };
    let mut plan = load_plan(&options)?;
    shoal_procfile::memory::apply(&mut plan, &args.memory_limits)
        .map_err(|err| UsageError(err.into()))?;
    for warning in &plan.warnings {
        report::warning(warning);
    }
    let ignored = [
        (
            args.image.is_some() && format == Format::Systemd,
            "--image",
            "kubernetes, swarm and compose",
        ),
        (
            args.health_path.is_some() && !matches!(format, Format::Kubernetes | Format::Swarm),
            "--health-path",
            "kubernetes and swarm",
        ),
        (
            args.endpoint_mode.is_some() && format != Format::Swarm,
            "--endpoint-mode",
            "swarm",
        ),
    ];
    for (_, flag, users) in ignored.iter().filter(|(ignored, ..)| *ignored) {
        eprintln!("warning: {flag} is used by {users} only; {format} ignores it");
    }

    let output_dir = std::path::absolute(&args.output).unwrap_or_else(|_| args.output.clone());
    let options = Options {
        app: args.app_name,
        image: args.image,
        timeout: Duration::from_secs_f64(args.timeout),
        health_path: args.health_path,
        hpa: args.hpa.then_some(Hpa {
            max: args.hpa_max,
            cpu_percent: args.hpa_cpu,
        }),
        endpoint_mode: match args.endpoint_mode {
            None | Some(cli::EndpointMode::Vip) => EndpointMode::Vip,
            Some(cli::EndpointMode::Dnsrr) => EndpointMode::Dnsrr,
        },
        output_dir: output_dir.clone(),
    };
    let export = shoal_export::render(&plan, format, &options).map_err(|e| UsageError(e.into()))?;
    for warning in &export.warnings {
        eprintln!("warning: {warning}");
    }
    let written =
        shoal_export::write::write(&output_dir, format, &export.app, &export.files, args.force)
            .map_err(|err| {
                // A directory that cannot be written, or half of the files in place, is the
                // export failing on the way (1); files in the way are the user's to move (2).
                if err.is_usage() {
                    UsageError(err.into()).into()
                } else {
                    anyhow::Error::from(err)
                }
            })?;
    for path in &written.written {
        println!("wrote {}", path.display());
    }
    for path in &written.removed {
        println!("removed {} (no longer part of the export)", path.display());
    }
    for warning in &written.warnings {
        eprintln!("warning: {warning}");
    }
    for step in &export.next_steps {
        eprintln!("next: {step}");
    }
    Ok(exit::OK)
}
