//! What every exporter takes from the plan: the app's and the process types' names on the
//! target, the commands as an instance's shell runs them, and the `.env` environment split into
//! plain and secret values by the rule `shoal check` masks by ([`is_secret`]). Also the warnings about configuration that cannot work once
//! instances run on other machines.

use std::time::Duration;

use shoal_procfile::Plan;
use shoal_procfile::plan::OWN_VARS;
use shoal_procfile::secret::is_secret;

use crate::names::{self, Target};
use crate::yaml::Yaml;
use crate::{ExportError, Format};

/// The process type that gets a port, a readiness check and the public port, as under `shoal
/// start` (where the router sits in front of it).
pub(crate) use shoal_procfile::plan::WEB;
/// Where a container's scratch directory (`SHOAL_SCRATCH`, `TMPDIR`) is mounted, on every
/// container target.
pub(crate) const CONTAINER_SCRATCH: &str = "/shoal/scratch";

/// The plan, named for one target.
pub(crate) struct Formation<'a> {
    pub(crate) plan: &'a Plan,
    /// The app's name on the target.
    pub(crate) app: String,
    pub(crate) types: Vec<Kind<'a>>,
    /// The `release` step, if the Procfile has one.
    pub(crate) release: Option<Release>,
    /// `.env` variables that are not secret, in the plan's order.
    pub(crate) config: Vec<(&'a str, &'a str)>,
    /// `.env` variables whose names look secret (`API_KEY`, `DB_PASSWORD`…) or whose values
    /// carry a URL password (`postgres://app:hunter2@db/app`): they go only where the owner
    /// alone can read them.
    pub(crate) secrets: Vec<(&'a str, &'a str)>,
}

/// The `release` step.
pub(crate) struct Release {
    /// The command as the shell runs it.
    pub(crate) command: String,
    /// Its `PORT`, as under `shoal start`: one that no instance uses, so that a release unit
    /// on the instances' machine never takes an instance's port.
    pub(crate) port: u16,
}

/// A process type, named for the target.
pub(crate) struct Kind<'a> {
    /// The name in the Procfile.
    pub(crate) procfile_name: &'a str,
    /// The name on the target.
    pub(crate) name: String,
    /// The command as the instance's shell runs it (`exec ./server` for a simple command).
    pub(crate) command: String,
    pub(crate) count: u32,
    /// `PORT` of the type's first instance, as under `shoal start`.
    pub(crate) port: u16,
    /// Its memory limit in bytes (`--memory-limit`), if it has one.
    pub(crate) memory_limit: Option<u64>,
}

impl Kind<'_> {
    pub(crate) fn is_web(&self) -> bool {
        self.procfile_name == WEB
    }
}

impl<'a> Formation<'a> {
    pub(crate) fn new(plan: &'a Plan, target: Target, app: &str) -> Result<Self, ExportError> {
        let app = names::app(app, target)?;
        let procfile_names: Vec<&str> = plan.types.iter().map(|t| t.name.as_str()).collect();
        let target_names = names::types(&app, &procfile_names, target)?;
        let types = plan
            .types
            .iter()
            .zip(target_names)
            .map(|(t, name)| Kind {
                procfile_name: &t.name,
                name,
                command: shell_command(&t.command),
                count: t.count,
                port: t.first_port,
                memory_limit: t.memory_limit,
            })
            .collect();
        let (secrets, config) = plan
            .env
            .iter()
            .filter(|v| !OWN_VARS.contains(&v.key.as_str()))
            .map(|v| (v.key.as_str(), v.value.as_str()))
            .partition(|(key, value)| is_secret(key, value));
        Ok(Formation {
            plan,
            app,
            types,
            release: plan.release.as_ref().map(|r| Release {
                command: shell_command(&r.command),
                port: r.port,
            }),
            config,
            secrets,
        })
    }

    pub(crate) fn web(&self) -> Option<&Kind<'a>> {
        self.types.iter().find(|t| t.is_web())
    }

    /// Every `.env` variable, plain and secret, in the plan's order.
    pub(crate) fn env(&self) -> Vec<(&'a str, &'a str)> {
        self.plan
            .env
            .iter()
            .filter(|v| !OWN_VARS.contains(&v.key.as_str()))
            .map(|v| (v.key.as_str(), v.value.as_str()))
            .collect()
    }

    /// A container's `deploy.resources` in the compose format (compose and swarm stack files):
    /// its memory limit, in units as compose writes them.
    pub(crate) fn compose_resources(bytes: u64) -> (&'static str, Yaml) {
        let memory = Formation::memory(bytes, ["k", "m", "g", ""], "b");
        (
            "resources",
            Yaml::map([("limits", Yaml::map([("memory", Yaml::Str(memory))]))]),
        )
    }

    /// A memory size in the largest of `units` (1024, 1024², 1024³, 1024⁴ bytes) that divides
    /// it (an empty unit is not used), else in bytes with `bytes_unit` after the number:
    /// `512Mi`, `512M`, `512m`.
    pub(crate) fn memory(bytes: u64, units: [&str; 4], bytes_unit: &str) -> String {
        for (shift, unit) in [
            (40, units[3]),
            (30, units[2]),
            (20, units[1]),
            (10, units[0]),
        ] {
            if !unit.is_empty() && bytes.is_multiple_of(1 << shift) {
                return format!("{}{unit}", bytes >> shift);
            }
        }
        format!("{bytes}{bytes_unit}")
    }

    /// The formation as a spec, `web=2 worker=1`.
    pub(crate) fn spec(&self) -> String {
        self.types
            .iter()
            .map(|t| format!("{}={}", t.procfile_name, t.count))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Configuration that works on one machine but not once instances run on several: a
    /// backing service on `localhost`, or an SQLite file.
    pub(crate) fn warnings(&self, format: Format) -> Vec<String> {
        let where_ = match format {
            // One machine: localhost and local files are what they are under `shoal start`.
            Format::Systemd => return Vec::new(),
            Format::Kubernetes => "in each instance's own pod",
            Format::Compose | Format::Swarm => "in each instance's own container",
        };
        self.env()
            .into_iter()
            .filter_map(|(key, value)| {
                let problem = local_resource(value)?;
                Some(format!(
                    "`{key}` {problem}, which on {format} is {where_}: instances would not share it; use a backing service reached over the network (e.g. a managed PostgreSQL or Redis)"
                ))
            })
            .collect()
    }
}

/// What is local about `value`, when it names a local backing service.
fn local_resource(value: &str) -> Option<String> {
    let lower = value.trim().to_ascii_lowercase();
    if lower.starts_with("sqlite:") {
        return Some("is an SQLite database".to_owned());
    }
    if (lower.starts_with('/') || lower.starts_with("./"))
        && [".sqlite", ".sqlite3", ".db"]
            .iter()
            .any(|e| lower.ends_with(e))
    {
        return Some("is an SQLite database file".to_owned());
    }
    let rest = &lower[lower.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let local =
        host == "localhost" || host.starts_with("127.") || host == "::1" || host == "0.0.0.0";
    local.then(|| format!("points at `{host}`"))
}

/// The command as the instance's `sh -c` runs it: `exec COMMAND` for a simple command, so that
/// the program replaces the shell, is the container's main process and gets SIGTERM itself (a
/// shell as PID 1 would not pass it on); compound commands are left as they are.
///
/// `shoal start` makes the same choice, but also looks the program up on `PATH`; the exporting
/// machine's `PATH` says nothing about an image's, so here only the shell's own words are
/// excluded.
pub(crate) fn shell_command(command: &str) -> String {
    shoal_procfile::command::exec_form(command, |_| true)
}

/// A duration as systemd and compose write it: `10s`, or `2500ms` when not whole seconds.
pub(crate) fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_resources_are_found() {
        for (value, found) in [
            (
                "postgres://app:pw@localhost:5432/app",
                Some("points at `localhost`"),
            ),
            ("redis://127.0.0.1:6379/0", Some("points at `127.0.0.1`")),
            ("memcache://[::1]:11211", Some("points at `::1`")),
            ("sqlite:///srv/app.db", Some("is an SQLite database")),
            (
                "/var/lib/app/data.sqlite3",
                Some("is an SQLite database file"),
            ),
            ("postgres://db.internal/app", None),
            ("https://localhost.example.com/", None),
            ("info", None),
        ] {
            assert_eq!(local_resource(value).as_deref(), found, "{value}");
        }
    }

    #[test]
    fn simple_commands_are_execed() {
        assert_eq!(
            shell_command("bundle exec puma -p $PORT"),
            "exec bundle exec puma -p $PORT"
        );
        assert_eq!(shell_command("./server"), "exec ./server");
        for kept in [
            "a && b",
            "a; b",
            "a | b",
            "A=1 ./x",
            "exec ./x",
            "cd web && ./x",
            "./x > log",
            "export A=1",
        ] {
            assert_eq!(shell_command(kept), kept);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(10)), "10s");
        assert_eq!(duration(Duration::from_millis(2500)), "2500ms");
        assert_eq!(duration(Duration::ZERO), "0s");
    }
}
