//! Kubernetes manifests, one object per file, for `kubectl apply -f DIR`:
//!
//! - a Deployment per process type, `replicas` = the formation's count (0 is kept: the type is
//!   declared, not run), running the Procfile command through `/bin/sh -c` as `shoal start`
//!   does;
//! - the `.env` variables as a ConfigMap, and the secret ones (a secret-looking name or a URL
//!   password, the rule `shoal check` masks by) as a Secret, both named `APP-env` and given to
//!   every container with `envFrom`;
//! - for `web`: a named container port, a readiness probe (TCP, or HTTP on `--health-path`), a
//!   `preStop` delay so endpoints are removed before SIGTERM arrives, and a Service with
//!   `sessionAffinity: None` in front (no sticky sessions);
//! - `release` as a Job, to run to completion before the Deployments are applied;
//! - with `--hpa`, a HorizontalPodAutoscaler for `web`.
//!
//! Every container gets `PORT`, its instance name (`PS`, `DYNO`, `SHOAL_INSTANCE`: the pod's
//! name, as a Deployment's pods have no numbers) and a scratch directory (`SHOAL_SCRATCH`,
//! `TMPDIR`) on an `emptyDir` volume that lives as long as the pod.

use std::time::Duration;

use crate::formation::{Formation, Kind};
use crate::yaml::{self, Yaml};
use crate::{Export, ExportError, File, Hpa, Options};

/// How long a stopping `web` pod keeps serving after it is taken out of the Service's
/// endpoints, so that no request is routed to a process that already got SIGTERM.
pub const PRE_STOP_DELAY: Duration = Duration::from_secs(5);
/// Where the scratch volume is mounted.
pub const SCRATCH_DIR: &str = crate::formation::CONTAINER_SCRATCH;
/// The CPU each `web` container requests when `--hpa` is given: utilisation is measured
/// against the request, so an autoscaled container must have one.
pub const HPA_CPU_REQUEST: &str = "100m";
/// The port the Service listens on.
pub const SERVICE_PORT: i64 = 80;

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

pub(crate) fn render(formation: &Formation<'_>, options: &Options) -> Result<Export, ExportError> {
    let app = &formation.app;
    let image = options.image_for(crate::Target::Kubernetes, app)?;
    let web = formation.web();
    let hpa = match (options.hpa, web) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ExportError::HpaWithoutWeb(
                "but the Procfile has no `web` process type",
            ));
        }
        (Some(_), Some(web)) if web.count == 0 => {
            return Err(ExportError::HpaWithoutWeb(
                "but the formation runs no `web` instance (web=0); give it at least one",
            ));
        }
        (Some(hpa), Some(web)) => {
            let max = hpa.max.unwrap_or((web.count * 4).max(2));
            if max < web.count {
                return Err(ExportError::HpaMax {
                    max,
                    min: web.count,
                });
            }
            Some((hpa, max))
        }
    };

    let env_name = format!("{app}-env");
    let mut files = Vec::new();
    if !formation.config.is_empty() {
        files.push(file(
            &env_name,
            "configmap",
            false,
            object("v1", "ConfigMap", &env_name, labels(app, None))
                .chain([("data", string_map(&formation.config))])
                .collect(),
        ));
    }
    if !formation.secrets.is_empty() {
        files.push(file(
            &env_name,
            "secret",
            true,
            object("v1", "Secret", &env_name, labels(app, None))
                .chain([
                    ("type", Yaml::str("Opaque")),
                    ("stringData", string_map(&formation.secrets)),
                ])
                .collect(),
        ));
    }
    let pod = Pod {
        formation,
        image,
        env_name: &env_name,
    };
    if let Some(release) = &formation.release {
        let name = format!("{app}-release");
        let template = Yaml::map([
            (
                "metadata",
                Yaml::map([("labels", labels(app, Some("release")))]),
            ),
            (
                "spec",
                pod.spec("release", &release.command, None, options, "Never"),
            ),
        ]);
        files.push(file(
            &name,
            "job",
            false,
            object("batch/v1", "Job", &name, labels(app, Some("release")))
                .chain([(
                    "spec",
                    Yaml::map([("backoffLimit", Yaml::Int(0)), ("template", template)]),
                )])
                .collect(),
        ));
    }
    for kind in &formation.types {
        let name = format!("{app}-{}", kind.name);
        let autoscaled = kind.is_web() && hpa.is_some();
        let mut spec = Vec::new();
        if !autoscaled {
            // With an autoscaler, a replica count here would reset its choice at every apply.
            spec.push(("replicas", Yaml::Int(kind.count.into())));
        }
        spec.extend([
            (
                "selector",
                Yaml::map([("matchLabels", selector(app, &kind.name))]),
            ),
            (
                "template",
                Yaml::map([
                    (
                        "metadata",
                        Yaml::map([("labels", labels(app, Some(&kind.name)))]),
                    ),
                    (
                        "spec",
                        pod.spec(&kind.name, &kind.command, Some(kind), options, "Always"),
                    ),
                ]),
            ),
        ]);
        files.push(file(
            &name,
            "deployment",
            false,
            object(
                "apps/v1",
                "Deployment",
                &name,
                labels(app, Some(&kind.name)),
            )
            .chain([("spec", Yaml::map(spec))])
            .collect(),
        ));
        if kind.is_web() {
            files.push(file(
                &name,
                "service",
                false,
                object("v1", "Service", &name, labels(app, Some(&kind.name)))
                    .chain([(
                        "spec",
                        Yaml::map([
                            ("type", Yaml::str("ClusterIP")),
                            ("sessionAffinity", Yaml::str("None")),
                            ("selector", selector(app, &kind.name)),
                            (
                                "ports",
                                Yaml::Seq(vec![Yaml::map([
                                    ("name", Yaml::str("http")),
                                    ("port", Yaml::Int(SERVICE_PORT)),
                                    ("targetPort", Yaml::str("http")),
                                    ("protocol", Yaml::str("TCP")),
                                ])]),
                            ),
                        ]),
                    )])
                    .collect(),
            ));
        }
        if let (true, Some((hpa, max))) = (kind.is_web(), hpa) {
            files.push(autoscaler(app, &name, kind, hpa, max));
        }
    }

    let mut next_steps = Vec::new();
    let dir = options.output_dir.display();
    if formation.release.is_some() {
        next_steps.push(format!(
            "run the release step and wait for it: kubectl delete job/{app}-release --ignore-not-found && kubectl apply -f {dir}/{app}-release.job.yaml && kubectl wait --for=condition=complete --timeout=15m job/{app}-release"
        ));
    }
    next_steps.push(format!("apply the formation: kubectl apply -f {dir}"));
    Ok(Export {
        app: formation.app.clone(),
        files,
        warnings: Vec::new(),
        next_steps,
    })
}

/// What every pod of the app shares.
struct Pod<'a> {
    formation: &'a Formation<'a>,
    image: &'a str,
    env_name: &'a str,
}

impl Pod<'_> {
    /// A pod spec running `command` in a container named `container`; `kind` is the process
    /// type (`None` for the release Job).
    fn spec(
        &self,
        container: &str,
        command: &str,
        kind: Option<&Kind<'_>>,
        options: &Options,
        restart: &str,
    ) -> Yaml {
        let web = kind.filter(|k| k.is_web());
        let port = match kind {
            Some(kind) => kind.port,
            // Only the release Job has no kind.
            None => (self.formation.release.as_ref()).map_or(self.formation.plan.port, |r| r.port),
        };
        let mut env = vec![Yaml::map([
            ("name", Yaml::str("PORT")),
            ("value", Yaml::Str(port.to_string())),
        ])];
        for var in ["PS", "DYNO", "SHOAL_INSTANCE"] {
            env.push(Yaml::map([
                ("name", Yaml::str(var)),
                (
                    "valueFrom",
                    Yaml::map([(
                        "fieldRef",
                        Yaml::map([("fieldPath", Yaml::str("metadata.name"))]),
                    )]),
                ),
            ]));
        }
        for var in ["SHOAL_SCRATCH", "TMPDIR"] {
            env.push(Yaml::map([
                ("name", Yaml::str(var)),
                ("value", Yaml::str(SCRATCH_DIR)),
            ]));
        }
        let mut env_from = Vec::new();
        if !self.formation.config.is_empty() {
            env_from.push(Yaml::map([(
                "configMapRef",
                Yaml::map([("name", Yaml::str(self.env_name))]),
            )]));
        }
        if !self.formation.secrets.is_empty() {
            env_from.push(Yaml::map([(
                "secretRef",
                Yaml::map([("name", Yaml::str(self.env_name))]),
            )]));
        }

        let mut c = vec![
            ("name", Yaml::str(container)),
            ("image", Yaml::str(self.image)),
            ("command", Yaml::strs(["/bin/sh", "-c", command])),
        ];
        if web.is_some() {
            c.push((
                "ports",
                Yaml::Seq(vec![Yaml::map([
                    ("name", Yaml::str("http")),
                    ("containerPort", Yaml::Int(port.into())),
                    ("protocol", Yaml::str("TCP")),
                ])]),
            ));
        }
        // `env` wins over `envFrom`, as shoal's own variables win over `.env` under `shoal start`.
        if !env_from.is_empty() {
            c.push(("envFrom", Yaml::Seq(env_from)));
        }
        c.push(("env", Yaml::Seq(env)));
        if web.is_some() {
            let check = match &options.health_path {
                Some(path) => (
                    "httpGet",
                    Yaml::map([("path", Yaml::str(path)), ("port", Yaml::str("http"))]),
                ),
                None => ("tcpSocket", Yaml::map([("port", Yaml::str("http"))])),
            };
            c.push((
                "readinessProbe",
                Yaml::map([
                    check,
                    ("periodSeconds", Yaml::Int(2)),
                    ("failureThreshold", Yaml::Int(3)),
                ]),
            ));
            c.push((
                "lifecycle",
                Yaml::map([(
                    "preStop",
                    Yaml::map([(
                        "exec",
                        Yaml::map([(
                            "command",
                            Yaml::strs([
                                "/bin/sh".to_owned(),
                                "-c".to_owned(),
                                format!("sleep {}", PRE_STOP_DELAY.as_secs()),
                            ]),
                        )]),
                    )]),
                )]),
            ));
        }
        // The memory request is the limit: the scheduler places the pod where that much is
        // free, and the kernel ends the container beyond it.
        let memory = kind
            .and_then(|k| k.memory_limit)
            .map(|bytes| Formation::memory(bytes, ["Ki", "Mi", "Gi", "Ti"], ""));
        let mut requests = Vec::new();
        if web.is_some() && options.hpa.is_some() {
            requests.push(("cpu", Yaml::str(HPA_CPU_REQUEST)));
        }
        if let Some(memory) = &memory {
            requests.push(("memory", Yaml::str(memory.as_str())));
        }
        if !requests.is_empty() {
            let mut resources = vec![("requests", Yaml::map(requests))];
            if let Some(memory) = &memory {
                resources.push((
                    "limits",
                    Yaml::map([("memory", Yaml::str(memory.as_str()))]),
                ));
            }
            c.push(("resources", Yaml::map(resources)));
        }
        c.push((
            "volumeMounts",
            Yaml::Seq(vec![Yaml::map([
                ("name", Yaml::str("scratch")),
                ("mountPath", Yaml::str(SCRATCH_DIR)),
            ])]),
        ));

        // The grace period starts with preStop: add the delay so that the process still gets
        // the full `--timeout` between SIGTERM and SIGKILL, as under `shoal start`.
        let pre_stop = if web.is_some() {
            PRE_STOP_DELAY
        } else {
            Duration::ZERO
        };
        let grace = (options.timeout + pre_stop).as_secs_f64().ceil() as i64;
        Yaml::map([
            ("restartPolicy", Yaml::str(restart)),
            ("terminationGracePeriodSeconds", Yaml::Int(grace)),
            ("containers", Yaml::Seq(vec![Yaml::map(c)])),
            (
                "volumes",
                Yaml::Seq(vec![Yaml::map([
                    ("name", Yaml::str("scratch")),
                    ("emptyDir", Yaml::Map(vec![])),
                ])]),
            ),
        ])
    }
}

fn autoscaler(app: &str, name: &str, kind: &Kind<'_>, hpa: Hpa, max: u32) -> File {
    file(
        name,
        "hpa",
        false,
        object(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            name,
            labels(app, Some(&kind.name)),
        )
        .chain([(
            "spec",
            Yaml::map([
                (
                    "scaleTargetRef",
                    Yaml::map([
                        ("apiVersion", Yaml::str("apps/v1")),
                        ("kind", Yaml::str("Deployment")),
                        ("name", Yaml::str(name)),
                    ]),
                ),
                ("minReplicas", Yaml::Int(kind.count.into())),
                ("maxReplicas", Yaml::Int(max.into())),
                (
                    "metrics",
                    Yaml::Seq(vec![Yaml::map([
                        ("type", Yaml::str("Resource")),
                        (
                            "resource",
                            Yaml::map([
                                ("name", Yaml::str("cpu")),
                                (
                                    "target",
                                    Yaml::map([
                                        ("type", Yaml::str("Utilization")),
                                        ("averageUtilization", Yaml::Int(hpa.cpu_percent.into())),
                                    ]),
                                ),
                            ]),
                        ),
                    ])]),
                ),
            ]),
        )])
        .collect(),
    )
}

/// `NAME.KIND.yaml` holding `entries` as one document.
fn file(name: &str, kind: &str, private: bool, entries: Vec<(&str, Yaml)>) -> File {
    File {
        name: format!("{name}.{kind}.yaml"),
        contents: yaml::to_string(&Yaml::map(entries)),
        private,
    }
}

/// The `apiVersion`, `kind` and `metadata` every object starts with.
fn object<'a>(
    api_version: &'a str,
    kind: &'a str,
    name: &str,
    labels: Yaml,
) -> impl Iterator<Item = (&'a str, Yaml)> {
    [
        ("apiVersion", Yaml::str(api_version)),
        ("kind", Yaml::str(kind)),
        (
            "metadata",
            Yaml::map([("name", Yaml::str(name)), ("labels", labels)]),
        ),
    ]
    .into_iter()
}

fn labels(app: &str, component: Option<&str>) -> Yaml {
    let mut labels = vec![(NAME_LABEL, Yaml::str(app))];
    if let Some(component) = component {
        labels.push((COMPONENT_LABEL, Yaml::str(component)));
    }
    labels.push((MANAGED_BY, Yaml::str("shoal")));
    Yaml::map(labels)
}

fn selector(app: &str, component: &str) -> Yaml {
    Yaml::map([
        (NAME_LABEL, Yaml::str(app)),
        (COMPONENT_LABEL, Yaml::str(component)),
    ])
}

fn string_map(vars: &[(&str, &str)]) -> Yaml {
    Yaml::map(vars.iter().map(|&(k, v)| (k, Yaml::str(v))))
}
