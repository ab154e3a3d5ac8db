//! The plan: a Procfile, its `.env` files and a formation spec, combined and validated.
//!
//! Ports: the formation's port (`-p`, else `PORT` from the `.env` files, else `PORT` from
//! shoal's own environment, else 5000) is the public port. When the Procfile has a `web` type,
//! shoal's router listens there and the instances' ports start one block of 100 above it, so
//! the two never collide; without `web`, instances start at the formation's port, as with
//! foreman. Each process type in Procfile order gets the next block of 100 ports, and instance N
//! of a type uses the type's first port + N - 1. A type scaled to 0 keeps its block, so ports
//! never shift. `release` gets the first port of the block after the last type's: it runs while
//! the router already holds the formation's port, and no instance ever uses that block.
//!
//! The environment of an instance is, from lowest to highest precedence: shoal's own environment
//! (inherited), the `.env` files in the order given (a later file wins), then the variables shoal
//! sets for each instance ([`Plan::instance_env`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::dotenv::{self, DotenvError};
use crate::formation::{self, Spec, SpecError};
use crate::procfile::{Procfile, ProcfileError};
use crate::{Warning, suggest};

/// The port a formation uses when nothing else says.
pub const DEFAULT_PORT: u16 = 5000;
/// Ports between the first ports of two consecutive process types.
pub const PORTS_PER_TYPE: u16 = 100;
/// The Procfile entry that runs once before the formation starts, as on Heroku.
pub const RELEASE: &str = "release";
/// The process type that gets HTTP traffic through the router, as on Heroku.
pub const WEB: &str = "web";

/// What [`Plan::load`] reads.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The Procfile (`-f`); relative paths are taken from the current directory.
    pub procfile: PathBuf,
    /// Where instances run (`-d`); the Procfile's directory when `None`.
    pub app_dir: Option<PathBuf>,
    /// `.env` files given with `-e`; when empty, `.env` in the app directory is read if present.
    pub env_files: Vec<PathBuf>,
    /// The formation spec (`-m`); one instance of every type when `None`.
    pub formation: Option<String>,
    /// The port given with `-p`.
    pub port: Option<u16>,
    /// `PORT` in shoal's own environment, if set.
    pub inherited_port: Option<String>,
    /// Lay ports out as if no router ran (for exports, where the target platform fronts the
    /// web instances itself): instances start at the formation's port even with `web`.
    pub without_router: bool,
}

/// A variable from a `.env` file, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// The `release` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub command: String,
    pub line: usize,
    /// Its `PORT`: the first port of the block after the last process type's, which neither
    /// the router nor any instance uses.
    pub port: u16,
}

/// A process type of the formation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessType {
    pub name: String,
    pub command: String,
    /// Line of the Procfile the command comes from.
    pub line: usize,
    /// How many instances run.
    pub count: u32,
    /// The port of instance 1.
    pub first_port: u16,
    /// Variables set for this type's instances only, over the `.env` files (as
    /// `--max-in-flight` sets `WEB_CONCURRENCY` for `web`); empty otherwise.
    pub env: Vec<(String, String)>,
    /// The most memory, in bytes, each instance may use (`--memory-limit`, see
    /// [`crate::memory`]); no limit when `None`.
    pub memory_limit: Option<u64>,
}

/// `web.1`: a process type and a 1-based index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName {
    pub kind: String,
    pub index: u32,
}

impl InstanceName {
    pub fn new(kind: impl Into<String>, index: u32) -> Self {
        Self {
            kind: kind.into(),
            index,
        }
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.index)
    }
}

/// Why a string is not an instance name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an instance name; expected `TYPE.N`, e.g. `web.1`")]
pub struct InstanceNameError(String);

impl FromStr for InstanceName {
    type Err = InstanceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InstanceNameError(s.to_owned());
        let (kind, index) = s.rsplit_once('.').ok_or_else(err)?;
        let index: u32 = index.parse().map_err(|_| err())?;
        if kind.is_empty() || index == 0 {
            return Err(err());
        }
        Ok(Self::new(kind, index))
    }
}

/// One instance the plan runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: InstanceName,
    pub command: String,
    pub port: u16,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Procfile(#[from] ProcfileError),
    #[error(transparent)]
    Dotenv(#[from] DotenvError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot use `{}` as the app directory", path.display())]
    AppDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown process type `{name}` in the formation spec{}; the Procfile defines {}", did_you_mean(suggestion), known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
    UnknownType {
        name: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error(
        "`release` runs once before the formation starts and cannot be scaled; remove `release` from the formation spec"
    )]
    ReleaseInFormation,
    #[error("the Procfile `{}` defines only `release`; expected at least one process type to run, e.g. `web: COMMAND`", procfile.display())]
    OnlyRelease { procfile: PathBuf },
    #[error("`PORT` from {origin} is `{value}`; expected a port number from 1 to 65535")]
    BadPort { value: String, origin: String },
    #[error("`{name}` would need port {port}, above 65535; use a lower port with `-p`")]
    PortOverflow { name: String, port: u32 },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// A validated plan of what a formation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The Procfile, as an absolute path.
    pub procfile: PathBuf,
    /// Where instances run, as an absolute path.
    pub app_dir: PathBuf,
    /// The `.env` files read, in order.
    pub env_files: Vec<PathBuf>,
    /// Variables from the `.env` files after precedence (later file wins), in first-seen order.
    pub env: Vec<EnvVar>,
    /// The formation's public port: the router's when the Procfile has `web`, else the first
    /// port of the first process type.
    pub port: u16,
    /// Whether the router runs (the Procfile has a `web` type).
    pub routed: bool,
    /// The `release` entry, if the Procfile has one.
    pub release: Option<Release>,
    /// Process types in Procfile order, without `release`.
    pub types: Vec<ProcessType>,
    /// Everything that was accepted with a reservation.
    pub warnings: Vec<Warning>,
}

impl Plan {
    /// Reads the Procfile and `.env` files and resolves the formation.
    pub fn load(options: &PlanOptions) -> Result<Self, PlanError> {
        let procfile_path = absolute(&options.procfile);
        let procfile = Procfile::read(&procfile_path)?;
        let default_dir = procfile_path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let (app_dir, env_files, env, port) = Self::environment(options, default_dir)?;
        let spec = options.formation.as_deref().map(Spec::parse).transpose()?;
        let names: Vec<&str> = procfile
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|&n| n != RELEASE)
            .collect();
        if let Some(spec) = &spec {
            for (name, _) in &spec.counts {
                if name == RELEASE {
                    return Err(PlanError::ReleaseInFormation);
                }
                if !names.contains(&name.as_str()) {
                    return Err(PlanError::UnknownType {
                        name: name.clone(),
                        suggestion: suggest::closest(name, names.iter().copied())
                            .map(str::to_owned),
                        known: names.iter().map(|&n| n.to_owned()).collect(),
                    });
                }
            }
        }
        if names.is_empty() {
            return Err(PlanError::OnlyRelease {
                procfile: procfile_path,
            });
        }

        let routed = names.contains(&WEB) && !options.without_router;
        let mut types = Vec::new();
        for (position, entry) in procfile
            .entries
            .iter()
            .filter(|e| e.name != RELEASE)
            .enumerate()
        {
            let count = spec.as_ref().map_or(1, |s| s.count_for(&entry.name, 1));
            let block = position as u32 + u32::from(routed);
            let first_port = u32::from(port) + u32::from(PORTS_PER_TYPE) * block;
            let last_port = first_port + count.max(1) - 1;
            if last_port > u32::from(u16::MAX) {
                return Err(PlanError::PortOverflow {
                    name: entry.name.clone(),
                    port: last_port,
                });
            }
            types.push(ProcessType {
                name: entry.name.clone(),
                command: entry.command.clone(),
                line: entry.line,
                count,
                first_port: first_port as u16,
                env: Vec::new(),
                memory_limit: None,
            });
        }
        debug_assert!(types.iter().all(|t| t.count <= formation::MAX_PER_TYPE));

        let release_port =
            u32::from(port) + u32::from(PORTS_PER_TYPE) * (types.len() as u32 + u32::from(routed));
        let release = match procfile.get(RELEASE) {
            Some(_) if release_port > u32::from(u16::MAX) => {
                return Err(PlanError::PortOverflow {
                    name: RELEASE.to_owned(),
                    port: release_port,
                });
            }
            Some(e) => Some(Release {
                command: e.command.clone(),
                line: e.line,
                port: release_port as u16,
            }),
            None => None,
        };
        Ok(Plan {
            procfile: procfile_path,
            app_dir,
            env_files,
            env,
            port,
            routed,
            release,
            types,
            warnings: procfile.warnings,
        })
    }

    /// A plan with no process types, for running one command with the environment a
    /// formation instance would get (`shoal run` outside a Procfile's folder). The app
    /// directory defaults to the current directory.
    pub fn without_procfile(options: &PlanOptions) -> Result<Self, PlanError> {
        let cwd = absolute(Path::new("."));
        let (app_dir, env_files, env, port) = Self::environment(options, cwd)?;
        Ok(Plan {
            procfile: absolute(&options.procfile),
            app_dir,
            env_files,
            env,
            port,
            routed: false,
            release: None,
            types: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// The app directory, the `.env` files and their variables, and the port.
    fn environment(
        options: &PlanOptions,
        default_dir: PathBuf,
    ) -> Result<(PathBuf, Vec<PathBuf>, Vec<EnvVar>, u16), PlanError> {
        let app_dir = match &options.app_dir {
            Some(dir) => {
                let dir = absolute(dir);
                match std::fs::metadata(&dir) {
                    Ok(meta) if meta.is_dir() => dir,
                    Ok(_) => {
                        return Err(PlanError::AppDir {
                            path: dir,
                            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
                        });
                    }
                    Err(source) => return Err(PlanError::AppDir { path: dir, source }),
                }
            }
            None => default_dir,
        };

        let env_files: Vec<PathBuf> = if options.env_files.is_empty() {
            let default = app_dir.join(".env");
            if default.is_file() {
                vec![default]
            } else {
                vec![]
            }
        } else {
            options.env_files.iter().map(|p| absolute(p)).collect()
        };
        let mut env: Vec<EnvVar> = Vec::new();
        // Where each key is in `env`: looking among all earlier keys made a long `.env` file
        // quadratic.
        let mut positions: HashMap<String, usize> = HashMap::new();
        for file in &env_files {
            for var in dotenv::read(file)? {
                let var = EnvVar {
                    key: var.key,
                    value: var.value,
                    file: file.clone(),
                    line: var.line,
                };
                match positions.get(&var.key) {
                    Some(&at) => env[at] = var,
                    None => {
                        positions.insert(var.key.clone(), env.len());
                        env.push(var);
                    }
                }
            }
        }

        let port = match (options.port, env.iter().find(|v| v.key == "PORT")) {
            (Some(port), _) => port,
            (None, Some(var)) => {
                parse_port(&var.value, format!("`{}`:{}", var.file.display(), var.line))?
            }
            (None, None) => match &options.inherited_port {
                Some(value) => parse_port(value, "the environment".to_owned())?,
                None => DEFAULT_PORT,
            },
        };
        Ok((app_dir, env_files, env, port))
    }

    /// Every instance of the formation, type by type.
    pub fn instances(&self) -> Vec<Instance> {
        self.types
            .iter()
            .flat_map(|t| (1..=t.count).map(move |index| self.instance_of(t, index)))
            .collect()
    }

    /// The process type named `name`.
    pub fn process_type(&self, name: &str) -> Option<&ProcessType> {
        self.types.iter().find(|t| t.name == name)
    }

    fn instance_of(&self, kind: &ProcessType, index: u32) -> Instance {
        Instance {
            name: InstanceName::new(kind.name.clone(), index),
            command: kind.command.clone(),
            port: kind.first_port.saturating_add((index - 1) as u16),
        }
    }

    /// The variables an instance gets on top of shoal's own environment: the `.env` variables,
    /// then shoal's per-instance variables, which win.
    pub fn instance_env(
        &self,
        name: &InstanceName,
        port: u16,
        scratch: &Path,
    ) -> Vec<(String, String)> {
        let own_type = self
            .process_type(&name.kind)
            .map_or(&[][..], |t| t.env.as_slice());
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|v| !OWN_VARS.contains(&v.key.as_str()))
            .filter(|v| !own_type.iter().any(|(key, _)| *key == v.key))
            .map(|v| (v.key.clone(), v.value.clone()))
            .collect();
        env.extend(
            own_type
                .iter()
                .filter(|(key, _)| !OWN_VARS.contains(&key.as_str()))
                .cloned(),
        );
        env.extend(own_vars(name, port, scratch));
        env
    }
}

/// Names of the variables shoal sets for every instance, in the order they are set.
pub const OWN_VARS: [&str; 6] = [
    "PORT",
    "PS",
    "DYNO",
    "SHOAL_INSTANCE",
    "SHOAL_SCRATCH",
    "TMPDIR",
];

/// The variables shoal sets for one instance: its port, its name (under the names foreman,
/// Heroku and shoal use) and its private scratch directory.
pub fn own_vars(name: &InstanceName, port: u16, scratch: &Path) -> Vec<(String, String)> {
    let name = name.to_string();
    let scratch = scratch.display().to_string();
    let values = [
        port.to_string(),
        name.clone(),
        name.clone(),
        name,
        scratch.clone(),
        scratch,
    ];
    OWN_VARS
        .iter()
        .zip(values)
        .map(|(k, v)| ((*k).to_owned(), v))
        .collect()
}

fn parse_port(value: &str, origin: String) -> Result<u16, PlanError> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| PlanError::BadPort {
            value: value.to_owned(),
            origin,
        })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new(procfile: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("Procfile"), procfile).unwrap();
            Dir(dir)
        }
        fn file(self, name: &str, text: &str) -> Self {
            std::fs::write(self.0.path().join(name), text).unwrap();
            self
        }
        fn options(&self) -> PlanOptions {
            PlanOptions {
                procfile: self.0.path().join("Procfile"),
                ..PlanOptions::default()
            }
        }
        fn load(&self, formation: Option<&str>) -> Result<Plan, PlanError> {
            Plan::load(&PlanOptions {
                formation: formation.map(str::to_owned),
                ..self.options()
            })
        }
    }

    fn summary(plan: &Plan) -> Vec<(String, u16)> {
        plan.instances()
            .into_iter()
            .map(|i| (i.name.to_string(), i.port))
            .collect()
    }

    /// Runs `work` on another thread, so that a read that never ends fails the test instead
    /// of hanging it.
    fn within_deadline<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(work());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("did not finish within 60 s")
    }

    #[test]
    fn a_procfile_or_env_file_that_is_not_a_regular_file_is_refused() {
        // `shoal check -f /dev/zero` read until memory ran out; `-e FIFO` waited for ever.
        let dir = Dir::new("web: a\n");
        let fifo = dir.0.path().join("pipe.env");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let procfile = dir.options();
        let loads = within_deadline(move || {
            [
                Plan::load(&PlanOptions {
                    procfile: "/dev/zero".into(),
                    ..PlanOptions::default()
                }),
                Plan::load(&PlanOptions {
                    env_files: vec!["/dev/zero".into()],
                    ..procfile.clone()
                }),
                Plan::load(&PlanOptions {
                    env_files: vec![fifo],
                    ..procfile
                }),
            ]
            .map(|load| load.unwrap_err().to_string())
        });
        assert_eq!(
            loads[..2],
            [
                "cannot read `/dev/zero`: it is a character device; expected a regular file",
                "cannot read `/dev/zero`: it is a character device; expected a regular file"
            ]
        );
        assert!(
            loads[2].ends_with("pipe.env`: it is a FIFO; expected a regular file"),
            "{}",
            loads[2]
        );
    }

    #[test]
    fn a_long_env_file_loads_in_linear_time() {
        // Each key was looked for among all the earlier ones: 100 000 keys made 5 * 10^9
        // comparisons.
        const KEYS: usize = 100_000;
        let env: String = (0..KEYS).map(|i| format!("K{i}={i}\n")).collect();
        let dir = Dir::new("web: a\n").file(".env", &env);
        let options = dir.options();
        let plan = within_deadline(move || Plan::load(&options)).unwrap();
        assert!(plan.env.len() >= KEYS, "{}", plan.env.len());
    }

    #[test]
    fn one_of_each_by_default_with_instances_above_the_router() {
        let dir = Dir::new("release: ./migrate\nweb: a\nworker: b\nclock: c\n");
        let plan = dir.load(None).unwrap();
        assert!(plan.routed);
        assert_eq!(plan.port, 5000);
        assert_eq!(
            summary(&plan),
            [
                ("web.1".into(), 5100),
                ("worker.1".into(), 5200),
                ("clock.1".into(), 5300)
            ]
        );
        assert_eq!(plan.release.as_ref().unwrap().command, "./migrate");
    }

    /// `release` runs while the router holds the formation's port: it gets the block after the
    /// last type's, in both layouts, and never a port of the router or of an instance.
    #[test]
    fn release_gets_a_port_of_its_own() {
        let dir = Dir::new("release: ./migrate\nweb: a\nworker: b\n");
        let plan = dir.load(Some("worker=0")).unwrap();
        assert_eq!(plan.release.unwrap().port, 5300);
        let plan = Plan::load(&PlanOptions {
            without_router: true,
            ..dir.options()
        })
        .unwrap();
        assert_eq!(plan.release.unwrap().port, 5200);

        let err = Plan::load(&PlanOptions {
            port: Some(65300),
            ..dir.options()
        })
        .unwrap_err();
        assert!(
            matches!(err, PlanError::PortOverflow { ref name, port: 65600 } if name == RELEASE),
            "{err}"
        );
    }

    #[test]
    fn without_web_ports_start_at_the_formation_port_as_with_foreman() {
        let dir = Dir::new("worker: b\nclock: c\n");
        let plan = dir.load(None).unwrap();
        assert!(!plan.routed);
        assert_eq!(
            summary(&plan),
            [("worker.1".into(), 5000), ("clock.1".into(), 5100)]
        );
    }

    #[test]
    fn formation_spec_counts_and_zero() {
        let dir = Dir::new("web: a\nworker: b\nclock: c\n");
        let plan = dir.load(Some("all=2,worker=0")).unwrap();
        assert_eq!(
            summary(&plan),
            [
                ("web.1".into(), 5100),
                ("web.2".into(), 5101),
                ("clock.1".into(), 5300),
                ("clock.2".into(), 5301)
            ]
        );
        assert_eq!(plan.process_type("worker").unwrap().count, 0);
    }

    #[test]
    fn unknown_type_suggests() {
        let dir = Dir::new("web: a\nworker: b\n");
        let err = dir.load(Some("wroker=2")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown process type `wroker` in the formation spec (did you mean `worker`?); the Procfile defines `web`, `worker`"
        );
        assert!(matches!(
            dir.load(Some("release=1")),
            Err(PlanError::ReleaseInFormation)
        ));
    }

    #[test]
    fn port_precedence_flag_then_dotenv_then_environment() {
        let dir = Dir::new("web: a\n").file(".env", "PORT=6000\n");
        assert_eq!(dir.load(None).unwrap().port, 6000);
        let with_flag = Plan::load(&PlanOptions {
            port: Some(7000),
            ..dir.options()
        });
        assert_eq!(with_flag.unwrap().port, 7000);

        let bare = Dir::new("web: a\n");
        let inherited = Plan::load(&PlanOptions {
            inherited_port: Some("8000".into()),
            ..bare.options()
        });
        assert_eq!(inherited.unwrap().port, 8000);
        let bad = Plan::load(&PlanOptions {
            inherited_port: Some("http".into()),
            ..bare.options()
        });
        assert_eq!(
            bad.unwrap_err().to_string(),
            "`PORT` from the environment is `http`; expected a port number from 1 to 65535"
        );
    }

    #[test]
    fn ports_must_fit() {
        let dir = Dir::new("web: a\nworker: b\n");
        let err = Plan::load(&PlanOptions {
            port: Some(65400),
            ..dir.options()
        })
        .unwrap_err();
        assert!(
            matches!(err, PlanError::PortOverflow { ref name, port: 65600 } if name == "worker")
        );
    }

    #[test]
    fn later_env_file_wins_and_own_vars_win_over_dotenv() {
        let dir = Dir::new("web: a\n")
            .file("one.env", "A=1\nB=1\nPS=fake\n")
            .file("two.env", "B=2\n");
        let plan = Plan::load(&PlanOptions {
            env_files: vec![dir.0.path().join("one.env"), dir.0.path().join("two.env")],
            ..dir.options()
        })
        .unwrap();
        let name = InstanceName::new("web", 1);
        let env = plan.instance_env(&name, 5000, Path::new("/scratch/web.1"));
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("2"));
        assert_eq!(get("PS"), Some("web.1"));
        assert_eq!(get("PORT"), Some("5000"));
        assert_eq!(get("TMPDIR"), Some("/scratch/web.1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PS").count(), 1);
    }

    #[test]
    fn only_release_is_an_error() {
        let dir = Dir::new("release: ./migrate\n");
        assert!(matches!(dir.load(None), Err(PlanError::OnlyRelease { .. })));
    }

    #[test]
    fn instance_names_round_trip() {
        let name: InstanceName = "web-api.12".parse().unwrap();
        assert_eq!(name, InstanceName::new("web-api", 12));
        assert_eq!(name.to_string(), "web-api.12");
        for bad in ["web", "web.0", ".1", "web.x"] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad}");
        }
    }
}
