//! Translates a [`Plan`] — a Procfile, its `.env` files and a formation — into the files another
//! engine runs it from: Kubernetes manifests, Docker Swarm stack files, systemd units, or a
//! compose file. shoal runs a formation on one machine; when that is not enough, these engines
//! take over, and shoal invents no distributed engine of its own.
//!
//! Rendering ([`render`]) is pure: it returns the files' names and contents, or an error, and
//! touches nothing. Writing ([`write::write`]) puts them into a directory without ever leaving
//! half an export behind, and neither overwrites nor removes files that the same app's export in
//! the same format did not write.
//!
//! # Layout
//! - [`names`]: the app's and the process types' names on each target, and when that fails.
//! - [`kubernetes`]: Deployments, a Service, a ConfigMap and Secret, a release Job, an HPA.
//! - [`systemd`]: a target, a unit per instance, a release unit, an environment file.
//! - [`compose`]: `compose.yaml`, a service per process type.
//! - [`swarm`]: stack files for `docker stack deploy`, a release job, a Docker secret.
//! - [`write`]: writing into the output directory, and recognising what shoal wrote before.
//! - `formation`: what every exporter takes from the plan (environment, commands, warnings).
//! - `yaml`: the YAML emitter the Kubernetes, swarm and compose exporters share.

pub mod compose;
mod formation;
pub mod kubernetes;
pub mod names;
pub mod swarm;
pub mod systemd;
pub mod write;
mod yaml;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use shoal_procfile::Plan;

pub use names::{NameError, Target};
pub use swarm::EndpointMode;

/// What an export needs besides the plan.
#[derive(Debug, Clone)]
pub struct Options {
    /// The app's name (`--app`); the app directory's name when `None`.
    pub app: Option<String>,
    /// The container image the app is built into (`--image`): required for Kubernetes and
    /// swarm; compose builds the app directory when `None`.
    pub image: Option<String>,
    /// The grace period between SIGTERM and SIGKILL (`--timeout`).
    pub timeout: Duration,
    /// An HTTP path that answers 2xx when a `web` instance is ready (`--health-path`); a TCP
    /// check when `None`.
    pub health_path: Option<String>,
    /// A HorizontalPodAutoscaler for `web` (Kubernetes only).
    pub hpa: Option<Hpa>,
    /// How other services reach `web`'s replicas on swarm (`--endpoint-mode`).
    pub endpoint_mode: EndpointMode,
    /// The directory the files go to, as an absolute path: systemd units name their
    /// environment file by it.
    pub output_dir: PathBuf,
}

impl Options {
    /// The image (`--image`), which `target` cannot do without.
    pub(crate) fn image_for(&self, target: Target, app: &str) -> Result<&str, ExportError> {
        self.image
            .as_deref()
            .ok_or_else(|| ExportError::ImageRequired {
                target,
                app: app.to_owned(),
            })
    }
}

/// The autoscaler's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hpa {
    /// The most `web` replicas; the formation's `web` count is the least.
    pub max: Option<u32>,
    /// The average CPU use, in percent of the request, that the autoscaler aims at.
    pub cpu_percent: u32,
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The file's name inside the output directory.
    pub name: String,
    pub contents: String,
    /// Whether it holds secret values (a secret-looking name or a URL password); such files are
    /// written readable by their owner only.
    pub private: bool,
}

/// What [`render`] produced.
#[derive(Debug, Clone)]
pub struct Export {
    /// The app's name on the target, as every file's marker line records it.
    pub app: String,
    /// The files, in the order they are listed.
    pub files: Vec<File>,
    /// Things that work differently on the target than under `shoal start`.
    pub warnings: Vec<String>,
    /// What to run next, in a sentence or two with the commands.
    pub next_steps: Vec<String>,
}

/// Why an export cannot be made. Every variant is the user's to fix.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Name(#[from] NameError),
    /// Kubernetes and swarm pull images; they cannot run a directory.
    #[error(
        "{target} runs containers from an image: pass the image the app is built into with --image, e.g. --image registry.example.com/{app}:1.0"
    )]
    ImageRequired { target: Target, app: String },
    /// `--image` that is not a usable image reference.
    #[error("`{0}` is not an image reference; expected e.g. `registry.example.com/app:1.0`")]
    BadImage(String),
    /// `--health-path` that is not an absolute URL path.
    #[error(
        "the health path `{0}` is not a URL path; expected one starting with `/`, e.g. `/health`"
    )]
    BadHealthPath(String),
    /// `--hpa` without `web` instances to scale.
    #[error("--hpa scales `web`, {0}")]
    HpaWithoutWeb(&'static str),
    /// `--hpa-max` below the formation's count.
    #[error(
        "--hpa-max {max} is below the formation's web={min}; the autoscaler needs room to grow"
    )]
    HpaMax { max: u32, min: u32 },
    /// An app directory that systemd cannot be told about.
    #[error(
        "the app directory `{0}` contains a line break, which systemd unit files cannot express"
    )]
    UnitPath(PathBuf),
}

/// A format `shoal export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Kubernetes,
    Systemd,
    Compose,
    Swarm,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 4] = [
        Format::Kubernetes,
        Format::Swarm,
        Format::Systemd,
        Format::Compose,
    ];

    pub fn target(self) -> Target {
        match self {
            Format::Kubernetes => Target::Kubernetes,
            Format::Systemd => Target::Systemd,
            Format::Compose => Target::Compose,
            Format::Swarm => Target::Swarm,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Kubernetes => "kubernetes",
            Format::Systemd => "systemd",
            Format::Compose => "compose",
            Format::Swarm => "swarm",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The files that run `plan` on the engine `format` names.
pub fn render(plan: &Plan, format: Format, options: &Options) -> Result<Export, ExportError> {
    if let Some(path) = &options.health_path
        && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ExportError::BadHealthPath(path.clone()));
    }
    if let Some(image) = &options.image
        && (image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(ExportError::BadImage(image.clone()));
    }
    let app_source = options.app.clone().unwrap_or_else(|| {
        plan.app_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let formation = formation::Formation::new(plan, format.target(), &app_source)?;
    let mut export = match format {
        Format::Kubernetes => kubernetes::render(&formation, options)?,
        Format::Systemd => systemd::render(&formation, options)?,
        Format::Compose => compose::render(&formation, options)?,
        Format::Swarm => swarm::render(&formation, options)?,
    };
    export.warnings.splice(0..0, formation.warnings(format));
    for file in &mut export.files {
        let header = write::header(format, &formation.app, &file.name);
        file.contents.insert_str(0, &header);
    }
    Ok(export)
}
