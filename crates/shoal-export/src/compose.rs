//! `compose.yaml`, for Docker Compose v2 (`docker compose`) on one host — not for `docker stack
//! deploy`, which refuses the long `depends_on` form and ignores `build`, `restart` and the
//! ordering of `release` (the `swarm` export is for that): a service per process type
//! with `deploy.replicas` = the formation's count, the `.env` variables and `PORT` in its
//! environment, `restart: always` and `stop_grace_period` = `--timeout`. `web` publishes its
//! port once on the host. `release`, when the Procfile has one, is a service that runs to
//! completion before the others start (`service_completed_successfully`). A `tmpfs` mount is
//! each container's scratch directory, empty at every start.
//!
//! Compose substitutes `$VAR` in every value of the file, so `$` from the Procfile and `.env`
//! is written `$$`: values mean the same as under `shoal start`.

use std::path::{Component, Path, PathBuf};

use crate::formation::{self, Formation};
use crate::yaml::{self, Yaml};
use crate::{Export, ExportError, File, Options};

/// The file's name; compose finds it without `-f`.
pub const FILE_NAME: &str = "compose.yaml";
/// Where the scratch `tmpfs` is mounted.
pub const SCRATCH_DIR: &str = crate::formation::CONTAINER_SCRATCH;

pub(crate) fn render(formation: &Formation<'_>, options: &Options) -> Result<Export, ExportError> {
    let image = match &options.image {
        Some(image) => ("image", Yaml::str(image.as_str())),
        None => (
            "build",
            Yaml::Str(relative(&formation.plan.app_dir, &options.output_dir)),
        ),
    };
    let grace = formation::duration(options.timeout);
    let service = |command: &str, port: u16| {
        let mut env: Vec<(String, Yaml)> = formation
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Yaml::Str(escape(v))))
            .collect();
        env.push(("PORT".to_owned(), Yaml::Str(port.to_string())));
        for var in ["SHOAL_SCRATCH", "TMPDIR"] {
            env.push((var.to_owned(), Yaml::str(SCRATCH_DIR)));
        }
        vec![
            image.clone(),
            (
                "entrypoint",
                Yaml::strs(["/bin/sh".to_owned(), "-c".to_owned(), escape(command)]),
            ),
            ("environment", Yaml::Map(env)),
            ("tmpfs", Yaml::strs([SCRATCH_DIR])),
            ("stop_grace_period", Yaml::str(grace.as_str())),
        ]
    };

    let mut services: Vec<(String, Yaml)> = Vec::new();
    if let Some(release) = &formation.release {
        let mut entries = service(&release.command, release.port);
        entries.push(("restart", Yaml::str("no")));
        services.push(("release".to_owned(), Yaml::map(entries)));
    }
    let mut warnings = Vec::new();
    for kind in &formation.types {
        let mut entries = service(&kind.command, kind.port);
        if kind.is_web() {
            entries.push((
                "ports",
                Yaml::strs([format!("{port}:{port}", port = kind.port)]),
            ));
            if kind.count > 1 {
                warnings.push(format!(
                    "`web` has {} replicas, but compose runs them on one host and publishes port {} for one of them only: nothing spreads requests over them; `shoal export swarm` (or kubernetes) does",
                    kind.count, kind.port
                ));
            }
        }
        if formation.release.is_some() {
            entries.push((
                "depends_on",
                Yaml::map([(
                    "release",
                    Yaml::map([("condition", Yaml::str("service_completed_successfully"))]),
                )]),
            ));
        }
        entries.push(("restart", Yaml::str("always")));
        let mut deploy = vec![("replicas", Yaml::Int(kind.count.into()))];
        if let Some(bytes) = kind.memory_limit {
            deploy.push(Formation::compose_resources(bytes));
        }
        entries.push(("deploy", Yaml::map(deploy)));
        services.push((kind.name.clone(), Yaml::map(entries)));
    }

    let document = Yaml::map([
        ("name", Yaml::str(formation.app.as_str())),
        ("services", Yaml::Map(services)),
    ]);
    let dir = options.output_dir.display();
    Ok(Export {
        app: formation.app.clone(),
        files: vec![File {
            name: FILE_NAME.to_owned(),
            contents: yaml::to_string(&document),
            private: !formation.secrets.is_empty(),
        }],
        warnings,
        next_steps: vec![format!(
            "start the formation: docker compose -f {dir}/{FILE_NAME} up{}",
            if options.image.is_none() {
                " --build"
            } else {
                ""
            }
        )],
    })
}

/// The document's first line, which names the app: `name: APP`.
pub(crate) fn name_line(app: &str) -> String {
    let document = Yaml::map([("name", Yaml::str(app))]);
    yaml::to_string(&document).trim_end().to_owned()
}

/// `$` doubled, so that compose passes it through instead of substituting a variable.
fn escape(value: &str) -> String {
    value.replace('$', "$$")
}

/// `path` relative to `base` (both absolute), as compose resolves `build:` from the file's
/// directory.
fn relative(path: &Path, base: &Path) -> String {
    let path: Vec<Component<'_>> = path.components().collect();
    let base: Vec<Component<'_>> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for part in &path[common..] {
        out.push(part);
    }
    match out.to_string_lossy().into_owned() {
        empty if empty.is_empty() => ".".to_owned(),
        relative => relative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/srv/app"), Path::new("/srv/app")), ".");
        assert_eq!(
            relative(Path::new("/srv/app"), Path::new("/srv/app/deploy")),
            ".."
        );
        assert_eq!(
            relative(Path::new("/srv/app"), Path::new("/tmp/out")),
            "../../srv/app"
        );
        assert_eq!(
            relative(Path::new("/srv/app/sub"), Path::new("/srv")),
            "app/sub"
        );
    }

    #[test]
    fn dollars_are_doubled() {
        assert_eq!(escape("exec ./server -p $PORT"), "exec ./server -p $$PORT");
    }
}
