//! Stack files for Docker Swarm (`docker stack deploy`), for Docker Engine 20.10 and later with a
//! docker CLI that knows jobs (23.0 and later):
//!
//! - `APP.stack.yaml`: a service per process type, `deploy.replicas` = the formation's count (0
//!   is kept), running the Procfile command as an instance does (`/bin/sh -c 'exec …'`, with
//!   `init: true` so that the program is not PID 1, which ignores SIGTERM without a handler),
//!   `PORT`, the instance name from the task's slot (`PS`, `DYNO`, `SHOAL_INSTANCE` =
//!   `web.{{.Task.Slot}}`), the scratch directory on a `tmpfs` mount (a new one for every
//!   task), `stop_grace_period` = `--timeout`, restarts after [`RESTART_DELAY`] whatever the exit
//!   code, rolling updates that start each new task before its old one stops and roll back
//!   when one fails, and with `--memory-limit`, `deploy.resources.limits.memory`;
//! - for `web`: a health check (the port listening, or `GET --health-path` answering 2xx), which
//!   swarm waits for before it puts a task behind the service's name, and the endpoint mode:
//!   `vip` publishes the port through the routing mesh, `dnsrr` publishes nothing and the
//!   service's name resolves to every healthy replica;
//! - `APP-release.stack.yaml`: `release` as a `replicated-job` with no retry, deployed into the
//!   same stack (and network) first and waited for; the commands are among the next steps;
//! - the secret `.env` values (the rule `shoal check` masks by, as for Kubernetes) in
//!   `APP.secret.sh`, readable by its owner only, which becomes a Docker secret named after a
//!   hash of its contents (secrets cannot change; a new value makes a new secret, and the
//!   services move to it in a rolling update). Every instance's shell reads it before the
//!   command (`. /run/secrets/shoal-env; exec …`), so the values arrive as environment
//!   variables, as `envFrom` gives them on Kubernetes. The other values are in `environment`.
//!
//! `docker stack deploy` substitutes `$VAR` in every value of the file, so `$` is written `$$`;
//! swarm expands Go templates in environment values, so a `{{` from `.env` is written
//! `{{"{{"}}`. Values mean the same as under `shoal start`.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::formation::{self, Formation, Kind};
use crate::yaml::{self, Yaml};
use crate::{Export, ExportError, File, Options, Target};

/// The stack file's format version: 3.9 is the newest that Docker 20.10's loader knows.
pub const VERSION: &str = "3.9";
/// Where the scratch `tmpfs` is mounted.
pub const SCRATCH_DIR: &str = crate::formation::CONTAINER_SCRATCH;
/// The name the secret file has in `/run/secrets/`.
pub const SECRET_TARGET: &str = "shoal-env";
/// How long swarm waits before starting a task again after one exited. Swarm has a fixed
/// delay where shoal doubles it (100 ms up to 30 s).
pub const RESTART_DELAY: &str = "1s";
/// How often `web`'s health check runs, and how long one may take.
pub const HEALTH_INTERVAL: &str = "2s";
/// Failed checks in a row that make a task unhealthy (swarm then replaces it).
pub const HEALTH_RETRIES: i64 = 3;
/// How long a new `web` task may take to become healthy before failed checks count, as shoal's
/// `--boot-timeout` default.
pub const HEALTH_START_PERIOD: &str = "60s";

/// How other services reach `web`'s replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointMode {
    /// One virtual IP per service, spreading connections over the replicas; the port is
    /// published on every node through the routing mesh.
    #[default]
    Vip,
    /// The service's name resolves to the address of every healthy replica; no port is
    /// published (the routing mesh needs a virtual IP).
    Dnsrr,
}

impl fmt::Display for EndpointMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        })
    }
}

pub(crate) fn render(formation: &Formation<'_>, options: &Options) -> Result<Export, ExportError> {
    let app = &formation.app;
    let image = options.image_for(Target::Swarm, app)?;

    let mut files = Vec::new();
    let secret = (!formation.secrets.is_empty()).then(|| {
        let contents = secret_file(&formation.secrets);
        let hash = Sha256::digest(contents.as_bytes());
        let name: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Secret {
            file: format!("{app}.secret.sh"),
            name: format!("{app}-env-{name}"),
            contents,
        }
    });
    let stack = Stack {
        formation,
        image,
        secret: secret.as_ref(),
        options,
    };
    let release_file = format!("{app}-release.stack.yaml");
    let app_file = format!("{app}.stack.yaml");
    if let Some(release) = &formation.release {
        let service = stack.release(&release.command, release.port);
        files.push(File {
            name: release_file.clone(),
            contents: stack.document([("release".to_owned(), service)]),
            private: false,
        });
    }
    let services = formation
        .types
        .iter()
        .map(|kind| (kind.name.clone(), stack.service(kind)))
        .collect::<Vec<_>>();
    files.push(File {
        name: app_file.clone(),
        contents: stack.document(services),
        private: false,
    });
    if let Some(secret) = &secret {
        files.push(File {
            name: secret.file.clone(),
            contents: secret.contents.clone(),
            private: true,
        });
    }

    let dir = options.output_dir.display();
    let mut next_steps = Vec::new();
    if formation.release.is_some() {
        let service = format!("{app}_release");
        let state = format!("docker service ps {service} --format \"{{{{.CurrentState}}}}\"");
        next_steps.push(format!(
            "run the release and wait for it to complete (a failed release stops here): docker service rm {service} >/dev/null 2>&1; docker stack deploy -c {dir}/{release_file} {app} && sh -c 'n=0; until {state} | grep -q ^Complete; do if {state} | grep -qE \"^(Failed|Rejected)\"; then docker service logs {service}; exit 1; fi; n=$((n+1)); if [ $n -ge 300 ]; then echo \"{service} did not complete within 10 minutes:\" >&2; docker service ps {service}; exit 1; fi; sleep 2; done'"
        ));
    }
    next_steps.push(format!(
        "deploy the formation: docker stack deploy -c {dir}/{app_file} {app}"
    ));
    if let Some(web) = formation.web() {
        next_steps.push(match options.endpoint_mode {
            EndpointMode::Vip => format!(
                "`web` answers on port {port} of every node (the routing mesh), and as `{app}_{name}:{port}` on the network `{app}_default`",
                port = web.port,
                name = web.name
            ),
            EndpointMode::Dnsrr => format!(
                "`web` publishes no port (dnsrr): reach it as `{app}_{name}:{port}` on the network `{app}_default`, e.g. from a proxy attached to it",
                port = web.port,
                name = web.name
            ),
        });
    }
    Ok(Export {
        app: app.clone(),
        files,
        warnings: Vec::new(),
        next_steps,
    })
}

/// The Docker secret holding the secret `.env` values.
struct Secret {
    /// The file it is created from, beside the stack files.
    file: String,
    /// Its name in the swarm: the app's, and a hash of the contents.
    name: String,
    contents: String,
}

/// What every service of the app shares.
struct Stack<'a> {
    formation: &'a Formation<'a>,
    image: &'a str,
    secret: Option<&'a Secret>,
    options: &'a Options,
}

impl Stack<'_> {
    /// A stack file with `services`, the network they share and the secret.
    fn document(&self, services: impl IntoIterator<Item = (String, Yaml)>) -> String {
        let mut entries = vec![
            ("version".to_owned(), Yaml::str(VERSION)),
            (
                "services".to_owned(),
                Yaml::Map(services.into_iter().collect()),
            ),
            (
                // Attachable, so that a one-off container (a console, a check) can join it.
                "networks".to_owned(),
                Yaml::map([("default", Yaml::map([("attachable", Yaml::Bool(true))]))]),
            ),
        ];
        if let Some(secret) = self.secret {
            entries.push((
                "secrets".to_owned(),
                Yaml::map([(
                    "env",
                    Yaml::map([
                        ("name", Yaml::str(secret.name.as_str())),
                        ("file", Yaml::Str(format!("./{}", secret.file))),
                    ]),
                )]),
            ));
        }
        yaml::to_string(&Yaml::Map(entries))
    }

    /// The entries every service has: the image, the command, the environment, the secret,
    /// the scratch directory and the grace period.
    fn common(&self, name: &str, port: u16, command: &str) -> Vec<(&'static str, Yaml)> {
        let mut env: Vec<(String, Yaml)> = self
            .formation
            .config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Yaml::Str(escape(v))))
            .collect();
        env.push(("PORT".to_owned(), Yaml::Str(port.to_string())));
        for var in ["PS", "DYNO", "SHOAL_INSTANCE"] {
            env.push((var.to_owned(), Yaml::str(name)));
        }
        for var in ["SHOAL_SCRATCH", "TMPDIR"] {
            env.push((var.to_owned(), Yaml::str(SCRATCH_DIR)));
        }
        let command = match self.secret {
            // A failing `.` ends a non-interactive shell: the command never runs without them.
            Some(_) => format!(". /run/secrets/{SECRET_TARGET}; {command}"),
            None => command.to_owned(),
        };
        let mut entries = vec![
            ("image", Yaml::str(self.image)),
            ("init", Yaml::Bool(true)),
            (
                "entrypoint",
                Yaml::strs([
                    "/bin/sh".to_owned(),
                    "-c".to_owned(),
                    command.replace('$', "$$"),
                ]),
            ),
            ("environment", Yaml::Map(env)),
        ];
        if self.secret.is_some() {
            entries.push((
                "secrets",
                Yaml::Seq(vec![Yaml::map([
                    ("source", Yaml::str("env")),
                    ("target", Yaml::str(SECRET_TARGET)),
                ])]),
            ));
        }
        entries.push((
            "volumes",
            Yaml::Seq(vec![Yaml::map([
                ("type", Yaml::str("tmpfs")),
                ("target", Yaml::str(SCRATCH_DIR)),
            ])]),
        ));
        entries.push((
            "stop_grace_period",
            Yaml::Str(formation::duration(self.options.timeout)),
        ));
        entries
    }

    /// The `release` job: one task, not retried.
    fn release(&self, command: &str, port: u16) -> Yaml {
        let mut entries = self.common("release.1", port, command);
        entries.push((
            "deploy",
            Yaml::map([
                ("mode", Yaml::str("replicated-job")),
                ("replicas", Yaml::Int(1)),
                (
                    "restart_policy",
                    Yaml::map([("condition", Yaml::str("none"))]),
                ),
            ]),
        ));
        Yaml::map(entries)
    }

    /// The service of a process type.
    fn service(&self, kind: &Kind<'_>) -> Yaml {
        let name = format!("{}.{{{{.Task.Slot}}}}", kind.procfile_name);
        let mut entries = self.common(&name, kind.port, &kind.command);
        if kind.is_web() {
            entries.push(("healthcheck", self.health_check(kind.port)));
            if self.options.endpoint_mode == EndpointMode::Vip {
                entries.push((
                    "ports",
                    Yaml::Seq(vec![Yaml::map([
                        ("target", Yaml::Int(kind.port.into())),
                        ("published", Yaml::Int(kind.port.into())),
                        ("protocol", Yaml::str("tcp")),
                        ("mode", Yaml::str("ingress")),
                    ])]),
                ));
            }
        }
        // One task at a time, the new one started (and, for web, healthy) before the old one
        // stops; a new task that fails puts the previous version back.
        let update = |failure_action: Option<&str>| {
            let mut entries = vec![
                ("parallelism", Yaml::Int(1)),
                ("order", Yaml::str("start-first")),
            ];
            if let Some(action) = failure_action {
                entries.push(("failure_action", Yaml::str(action)));
            }
            Yaml::map(entries)
        };
        let mut deploy = vec![
            ("mode", Yaml::str("replicated")),
            ("replicas", Yaml::Int(kind.count.into())),
        ];
        if let Some(bytes) = kind.memory_limit {
            // The kernel's hard limit, as on the other targets.
            deploy.push(Formation::compose_resources(bytes));
        }
        if kind.is_web() {
            deploy.push((
                "endpoint_mode",
                Yaml::Str(self.options.endpoint_mode.to_string()),
            ));
        }
        deploy.extend([
            ("update_config", update(Some("rollback"))),
            ("rollback_config", update(None)),
            (
                "restart_policy",
                Yaml::map([
                    ("condition", Yaml::str("any")),
                    ("delay", Yaml::str(RESTART_DELAY)),
                ]),
            ),
        ]);
        entries.push(("deploy", Yaml::map(deploy)));
        Yaml::map(entries)
    }

    /// `web`'s health check, run in the container by its `/bin/sh`: `GET --health-path` with
    /// `wget` or `curl`, else the port listening, read from the kernel's socket tables with
    /// `grep` (so no network tool is needed).
    fn health_check(&self, port: u16) -> Yaml {
        let test = match &self.options.health_path {
            Some(path) => {
                let url = format!("http://127.0.0.1:{port}{path}").replace('$', "$$");
                format!(
                    "wget -q -O /dev/null '{url}' || curl -fsS -o /dev/null '{url}'",
                    url = url.replace('\'', "'\\''")
                )
            }
            None => format!(
                "grep -qiE '^ *[0-9]+: [0-9A-F]+:{port:04X} [0-9A-F]+:[0-9A-F]+ 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null"
            ),
        };
        Yaml::map([
            ("test", Yaml::strs(["CMD-SHELL".to_owned(), test])),
            ("interval", Yaml::str(HEALTH_INTERVAL)),
            ("timeout", Yaml::str(HEALTH_INTERVAL)),
            ("retries", Yaml::Int(HEALTH_RETRIES)),
            ("start_period", Yaml::str(HEALTH_START_PERIOD)),
        ])
    }
}

/// A value as `docker stack deploy` and swarm pass it on unchanged: `$` doubled (variable
/// substitution) and `{{` written as a template that prints it (swarm's templates).
fn escape(value: &str) -> String {
    value.replace('$', "$$").replace("{{", "{{\"{{\"}}")
}

/// The secret values as `/bin/sh` reads them: `export KEY='value'`, a `'` in the value written
/// `'\''`; line breaks stay as they are inside the quotes.
fn secret_file(vars: &[(&str, &str)]) -> String {
    vars.iter()
        .map(|(key, value)| format!("export {key}='{}'\n", value.replace('\'', "'\\''")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_substitution_and_templates() {
        assert_eq!(
            escape("$HOME {{.Task.Slot}} }}"),
            "$$HOME {{\"{{\"}}.Task.Slot}} }}"
        );
    }

    #[test]
    fn the_secret_file_is_shell_quoted() {
        assert_eq!(
            secret_file(&[("A", "it's $x"), ("B", "two\nlines")]),
            "export A='it'\\''s $x'\nexport B='two\nlines'\n"
        );
    }

    /// The secret file, read by a real `/bin/sh`, gives back every value exactly.
    #[test]
    fn the_secret_file_reads_back_in_sh() {
        let values = [
            ("A", "it's $HOME `id` \\n \"q\""),
            ("B", "two\nlines\n"),
            ("C", ""),
            ("D", "'''"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.sh");
        std::fs::write(&path, secret_file(&values)).unwrap();
        for (key, value) in values {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!(". '{}'; printf %s \"${key}\"", path.display()))
                .env_clear()
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value, "{key}");
        }
    }
}
