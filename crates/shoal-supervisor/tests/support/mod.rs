//! What the supervisor's integration tests share: a temporary app directory with a Procfile,
//! its plan, and a runtime directory.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use shoal_procfile::{Plan, PlanOptions};
use shoal_supervisor::RuntimeDir;
use tempfile::TempDir;

pub(crate) struct App {
    /// The app directory, with the Procfile.
    pub(crate) dir: TempDir,
    pub(crate) plan: Plan,
    pub(crate) runtime: RuntimeDir,
    _runtime_base: TempDir,
}

impl App {
    /// An app whose Procfile is `procfile`, run as `formation` (`-m`; one of each when `None`).
    pub(crate) fn new(procfile: &str, formation: Option<&str>) -> App {
        App::with_options(
            procfile,
            PlanOptions {
                formation: formation.map(str::to_owned),
                ..PlanOptions::default()
            },
        )
    }

    /// An app whose Procfile is `procfile`, planned with `options` (the Procfile's path is
    /// filled in).
    pub(crate) fn with_options(procfile: &str, options: PlanOptions) -> App {
        let dir = tempfile::tempdir().unwrap();
        let runtime_base = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Procfile"), procfile).unwrap();
        let plan = Plan::load(&PlanOptions {
            procfile: dir.path().join("Procfile"),
            ..options
        })
        .unwrap();
        let runtime = RuntimeDir::under(runtime_base.path(), &plan.procfile);
        runtime.create().unwrap();
        App {
            dir,
            plan,
            runtime,
            _runtime_base: runtime_base,
        }
    }
}
