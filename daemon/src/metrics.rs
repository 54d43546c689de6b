//! Prometheus metrics of the control API: how many operations of each kind
//! ended how, how long they took, and how many volumes and publications the
//! engine holds (read from the state store at each scrape, so they are
//! right even when the CLI changed something), how registration with the
//! appliance goes ([`RegistrationMetrics`]), and what the Docker volume
//! plugin does, request by request and stage by stage ([`DockerMetrics`]).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use dockerplugin::observe::{Observer, Operation, Stage};

type OpLabels = [(&'static str, &'static str); 2];
type KindLabel = [(&'static str, &'static str); 1];
type ResultLabel = [(&'static str, &'static str); 1];

/// Registration's counters: one set per process (the registration task is
/// process-wide, like the signal handlers), registered into every
/// [`Metrics`] registry so `/metrics` shows them.
#[derive(Clone, Default)]
pub struct RegistrationMetrics {
    attempts: Family<ResultLabel, Counter>,
    registered: Gauge,
}

impl RegistrationMetrics {
    /// The process's registration metrics.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<RegistrationMetrics> = OnceLock::new();
        GLOBAL.get_or_init(Self::default)
    }

    /// Counts one registration attempt that ended with `result` (`ok` or
    /// the error kind) and sets the registered gauge.
    pub fn attempt(&self, result: &'static str, registered: bool) {
        self.attempts.get_or_create(&[("result", result)]).inc();
        self.registered.set(i64::from(registered));
    }
}

type DockerOpLabel = [(&'static str, &'static str); 1];
type DockerResultLabels = [(&'static str, &'static str); 2];
type DockerStageLabels = [(&'static str, &'static str); 2];

/// The Docker volume plugin's metrics: one set per process (the plugin is
/// started apart from the control API's state), registered into every
/// [`Metrics`] registry; goldmountd hands it to the plugin's driver as its
/// [`Observer`]. Kept apart from the control API's
/// `goldmount_operations*` families, whose `kind`s are API operations.
#[derive(Clone)]
pub struct DockerMetrics {
    requests: Family<DockerResultLabels, Counter>,
    durations: Family<DockerOpLabel, Histogram, Buckets>,
    stages: Family<DockerStageLabels, Histogram, Buckets>,
    in_flight: Family<DockerOpLabel, Gauge>,
}

impl Default for DockerMetrics {
    fn default() -> Self {
        let me = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(Buckets),
            stages: Family::new_with_constructor(Buckets),
            in_flight: Family::default(),
        };
        // Every in-flight gauge shows (at 0) before the first request.
        for op in Operation::ALL {
            let _ = me.in_flight.get_or_create(&[("operation", op.as_str())]);
        }
        me
    }
}

impl DockerMetrics {
    /// The process's Docker plugin metrics.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<DockerMetrics> = OnceLock::new();
        GLOBAL.get_or_init(Self::default)
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "goldmount_docker_requests",
            "Docker volume plugin requests by operation and result (ok or the error kind)",
            self.requests.clone(),
        );
        registry.register(
            "goldmount_docker_request_duration_seconds",
            "Time a Docker volume plugin request took, by operation",
            self.durations.clone(),
        );
        registry.register(
            "goldmount_docker_stage_duration_seconds",
            "Time a stage of a Docker volume plugin request took when it succeeded, by operation and stage (lock_wait, appliance_check, appliance_clone, appliance_present, engine_mount, publish, teardown, appliance_unpresent, appliance_delete)",
            self.stages.clone(),
        );
        registry.register(
            "goldmount_docker_requests_in_flight",
            "Docker volume plugin requests running now, by operation",
            self.in_flight.clone(),
        );
    }
}

impl Observer for DockerMetrics {
    fn started(&self, op: Operation, _volume: &str) {
        self.in_flight
            .get_or_create(&[("operation", op.as_str())])
            .inc();
    }

    fn finished(&self, op: Operation, _volume: &str, result: &'static str, took: Duration) {
        let o = op.as_str();
        self.in_flight.get_or_create(&[("operation", o)]).dec();
        self.requests
            .get_or_create(&[("operation", o), ("result", result)])
            .inc();
        self.durations
            .get_or_create(&[("operation", o)])
            .observe(took.as_secs_f64());
    }

    fn stage_finished(&self, op: Operation, _volume: &str, stage: Stage, took: Duration, ok: bool) {
        if ok {
            self.stages
                .get_or_create(&[("operation", op.as_str()), ("stage", stage.as_str())])
                .observe(took.as_secs_f64());
        }
    }
}

/// Buckets from 5 ms to about 82 s: a listing takes milliseconds, a mount
/// of a LUN that must first appear takes seconds to a minute.
#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.005, 2.0, 15))
    }
}

/// The registry and its metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    operations: Family<OpLabels, Counter>,
    durations: Family<KindLabel, Histogram, Buckets>,
    volumes: Gauge,
    publications: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let operations = Family::<OpLabels, Counter>::default();
        let durations = Family::<KindLabel, Histogram, Buckets>::new_with_constructor(Buckets);
        let volumes = Gauge::default();
        let publications = Gauge::default();
        registry.register(
            "goldmount_operations",
            "Control API operations by kind and result (ok or the error kind)",
            operations.clone(),
        );
        registry.register(
            "goldmount_operation_duration_seconds",
            "Time the engine took per operation kind",
            durations.clone(),
        );
        registry.register(
            "goldmount_volumes",
            "Volumes the engine holds on this host",
            volumes.clone(),
        );
        registry.register(
            "goldmount_publications",
            "Publications (consumer bind mounts) of all volumes",
            publications.clone(),
        );
        let reg = RegistrationMetrics::global();
        registry.register(
            "goldmount_registration_attempts",
            "Registrations with the appliance by result (ok or the error kind)",
            reg.attempts.clone(),
        );
        registry.register(
            "goldmount_registered",
            "1 when the last registration with the appliance succeeded, else 0",
            reg.registered.clone(),
        );
        DockerMetrics::global().register(&mut registry);
        Self {
            registry: Arc::new(Mutex::new(registry)),
            operations,
            durations,
            volumes,
            publications,
        }
    }
}

impl Metrics {
    /// Counts one operation of `kind` that ended with `result`.
    pub fn operation(&self, kind: &'static str, result: &'static str, took: Option<Duration>) {
        self.operations
            .get_or_create(&[("kind", kind), ("result", result)])
            .inc();
        if let Some(t) = took {
            self.durations
                .get_or_create(&[("kind", kind)])
                .observe(t.as_secs_f64());
        }
    }

    /// Sets the volume and publication gauges.
    pub fn set_counts(&self, volumes: usize, publications: usize) {
        self.volumes.set(i64::try_from(volumes).unwrap_or(i64::MAX));
        self.publications
            .set(i64::try_from(publications).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        encode(&mut out, &registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_text_has_every_metric_with_its_labels() {
        let m = Metrics::default();
        m.operation("mount", "ok", Some(Duration::from_millis(30)));
        m.operation("mount", "busy", None);
        m.set_counts(3, 2);
        let t = m.render().unwrap();
        assert!(
            t.contains(r#"goldmount_operations_total{kind="mount",result="ok"} 1"#),
            "{t}"
        );
        assert!(t.contains(r#"goldmount_operations_total{kind="mount",result="busy"} 1"#));
        assert!(t.contains(r#"goldmount_operation_duration_seconds_count{kind="mount"} 1"#));
        assert!(
            t.contains(r#"goldmount_operation_duration_seconds_bucket{le="0.04",kind="mount"} 1"#)
                || t.contains(
                    r#"goldmount_operation_duration_seconds_bucket{kind="mount",le="0.04"} 1"#
                ),
            "{t}"
        );
        assert!(t.contains("goldmount_volumes 3"));
        assert!(t.contains("goldmount_publications 2"));
    }

    #[test]
    fn docker_plugin_requests_and_stages_are_exported() {
        let m = Metrics::default();
        let d = DockerMetrics::global();
        let t = m.render().unwrap();
        for family in [
            "# TYPE goldmount_docker_requests counter",
            "# TYPE goldmount_docker_request_duration_seconds histogram",
            "# TYPE goldmount_docker_stage_duration_seconds histogram",
            "# TYPE goldmount_docker_requests_in_flight gauge",
            r#"goldmount_docker_requests_in_flight{operation="unmount"} 0"#,
        ] {
            assert!(t.contains(family), "{family} not in\n{t}");
        }
        d.started(Operation::Remove, "v");
        let t = m.render().unwrap();
        assert!(
            t.contains(r#"goldmount_docker_requests_in_flight{operation="remove"} 1"#),
            "{t}"
        );
        d.stage_finished(
            Operation::Remove,
            "v",
            Stage::ApplianceDelete,
            Duration::from_millis(20),
            true,
        );
        d.stage_finished(
            Operation::Remove,
            "v",
            Stage::ApplianceUnpresent,
            Duration::from_millis(20),
            false,
        );
        d.finished(
            Operation::Remove,
            "v",
            "conflict",
            Duration::from_millis(30),
        );
        let t = m.render().unwrap();
        assert!(
            t.contains(r#"goldmount_docker_requests_in_flight{operation="remove"} 0"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"goldmount_docker_requests_total{operation="remove",result="conflict"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(r#"goldmount_docker_request_duration_seconds_count{operation="remove"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"goldmount_docker_stage_duration_seconds_sum{operation="remove",stage="appliance_delete"} 0.02"#),
            "{t}"
        );
        assert!(
            !t.contains(r#"stage="appliance_unpresent""#),
            "a failed stage is not timed: {t}"
        );
    }

    #[test]
    fn registration_attempts_and_state_are_exported() {
        let m = Metrics::default();
        RegistrationMetrics::global().attempt("unreachable", false);
        let t = m.render().unwrap();
        assert!(
            t.contains(r#"goldmount_registration_attempts_total{result="unreachable"}"#),
            "{t}"
        );
        assert!(t.contains("goldmount_registered 0"), "{t}");
        RegistrationMetrics::global().attempt("ok", true);
        let t = m.render().unwrap();
        assert!(
            t.contains(r#"goldmount_registration_attempts_total{result="ok"}"#),
            "{t}"
        );
        assert!(t.contains("goldmount_registered 1"), "{t}");
    }
}
