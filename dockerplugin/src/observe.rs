//! What the plugin tells whoever watches it: every request as it starts
//! and ends (operation, volume, result, time taken) and every stage of the
//! slow ones (the appliance's clone and presentation, the engine's mount,
//! the publication, the teardown…) with its time. goldmountd turns these
//! into Prometheus metrics; the plugin itself depends on no metrics
//! library, and without an observer ([`NoObserver`]) nothing is counted.
//!
//! Callbacks run on the request's own (blocking) thread, in line: an
//! observer must be quick and must not take locks the driver could hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A plugin request, as Docker names it (`VolumeDriver.<Operation>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `Plugin.Activate`.
    Activate,
    /// `VolumeDriver.Capabilities`.
    Capabilities,
    /// `VolumeDriver.Create`.
    Create,
    /// `VolumeDriver.Remove`.
    Remove,
    /// `VolumeDriver.Mount`.
    Mount,
    /// `VolumeDriver.Unmount`.
    Unmount,
    /// `VolumeDriver.Path`.
    Path,
    /// `VolumeDriver.Get`.
    Get,
    /// `VolumeDriver.List`.
    List,
}

impl Operation {
    /// Every operation (for registering label sets up front).
    pub const ALL: [Operation; 9] = [
        Self::Activate,
        Self::Capabilities,
        Self::Create,
        Self::Remove,
        Self::Mount,
        Self::Unmount,
        Self::Path,
        Self::Get,
        Self::List,
    ];

    /// The label value (`create`, `mount`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Capabilities => "capabilities",
            Self::Create => "create",
            Self::Remove => "remove",
            Self::Mount => "mount",
            Self::Unmount => "unmount",
            Self::Path => "path",
            Self::Get => "get",
            Self::List => "list",
        }
    }
}

/// A timed part of a request: where a slow Create, Mount, Unmount or
/// Remove spends its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Waiting for the volume's own lock (another request on the same
    /// volume runs); requests on different volumes never wait here.
    LockWait,
    /// Create: the appliance is asked whether the gold copy exists.
    ApplianceCheck,
    /// Create: the appliance clones the gold copy.
    ApplianceClone,
    /// Create: the appliance presents the clone to this host.
    AppliancePresent,
    /// Mount: the engine's attach (waiting for the device), probe, import
    /// and mount of the whole tree — one engine call.
    EngineMount,
    /// Mount: the tree published (bind-mounted) at the volume's mountpoint.
    Publish,
    /// Unmount, Remove: the tree unpublished and unmounted.
    Teardown,
    /// Remove: the appliance takes the presentation away.
    ApplianceUnpresent,
    /// Remove: the appliance deletes the clone.
    ApplianceDelete,
}

impl Stage {
    /// The stages each operation can go through, in order (for registering
    /// label sets up front).
    pub fn of(op: Operation) -> &'static [Stage] {
        match op {
            Operation::Create => &[
                Self::LockWait,
                Self::ApplianceCheck,
                Self::ApplianceClone,
                Self::AppliancePresent,
            ],
            Operation::Mount => &[Self::LockWait, Self::EngineMount, Self::Publish],
            Operation::Unmount => &[Self::LockWait, Self::Teardown],
            Operation::Remove => &[
                Self::LockWait,
                Self::Teardown,
                Self::ApplianceUnpresent,
                Self::ApplianceDelete,
            ],
            _ => &[],
        }
    }

    /// The label value (`appliance_clone`, `engine_mount`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LockWait => "lock_wait",
            Self::ApplianceCheck => "appliance_check",
            Self::ApplianceClone => "appliance_clone",
            Self::AppliancePresent => "appliance_present",
            Self::EngineMount => "engine_mount",
            Self::Publish => "publish",
            Self::Teardown => "teardown",
            Self::ApplianceUnpresent => "appliance_unpresent",
            Self::ApplianceDelete => "appliance_delete",
        }
    }
}

/// Receives the plugin's requests and stages. Every method has an empty
/// default, so an observer implements only what it uses.
pub trait Observer: Send + Sync {
    /// Request `op` on `volume` (empty for List, Capabilities, Activate)
    /// begins.
    fn started(&self, _op: Operation, _volume: &str) {}

    /// Request `op` on `volume` ended with `result` (`ok`, or the
    /// [`PluginError::kind`](crate::PluginError::kind)) after `took`.
    /// Called exactly once per [`started`](Self::started), also when the
    /// request panicked (`internal`).
    fn finished(&self, _op: Operation, _volume: &str, _result: &'static str, _took: Duration) {}

    /// Stage `stage` of `op` on `volume` begins.
    fn stage_started(&self, _op: Operation, _volume: &str, _stage: Stage) {}

    /// Stage `stage` of `op` on `volume` ended after `took`; `ok` is false
    /// when it failed (the request then fails too).
    fn stage_finished(
        &self,
        _op: Operation,
        _volume: &str,
        _stage: Stage,
        _took: Duration,
        _ok: bool,
    ) {
    }
}

/// Observes nothing: the driver's default.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// An observer shared by the driver and the server.
pub type SharedObserver = Arc<dyn Observer>;

/// One request being observed: reports [`Observer::finished`] when
/// [`done`](Self::done) or, if the request never got there (a panic),
/// on drop with `internal` — so in-flight counts always come back down.
pub struct Request {
    observer: SharedObserver,
    op: Operation,
    volume: String,
    t0: Instant,
    open: bool,
}

impl Request {
    /// Reports `op` on `volume` as started.
    pub fn start(observer: SharedObserver, op: Operation, volume: &str) -> Self {
        observer.started(op, volume);
        Self {
            observer,
            op,
            volume: volume.to_string(),
            t0: Instant::now(),
            open: true,
        }
    }

    /// Reports it finished with `result`.
    pub fn done(mut self, result: &'static str) {
        self.finish(result);
    }

    fn finish(&mut self, result: &'static str) {
        if std::mem::take(&mut self.open) {
            self.observer
                .finished(self.op, &self.volume, result, self.t0.elapsed());
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.finish("internal");
    }
}

/// Runs `f` as stage `stage` of `op` on `volume`, reporting its start and
/// its end (with whether it returned `Ok`).
pub fn stage<T, E>(
    observer: &dyn Observer,
    op: Operation,
    volume: &str,
    stage: Stage,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    observer.stage_started(op, volume, stage);
    let t0 = Instant::now();
    let r = f();
    observer.stage_finished(op, volume, stage, t0.elapsed(), r.is_ok());
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Observer for Log {
        fn started(&self, op: Operation, volume: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {} {volume}", op.as_str()));
        }
        fn finished(&self, op: Operation, volume: &str, result: &'static str, _: Duration) {
            self.0
                .lock()
                .unwrap()
                .push(format!("end {} {volume} {result}", op.as_str()));
        }
        fn stage_started(&self, _: Operation, _: &str, s: Stage) {
            self.0.lock().unwrap().push(format!("stage {}", s.as_str()));
        }
        fn stage_finished(&self, _: Operation, _: &str, s: Stage, _: Duration, ok: bool) {
            self.0
                .lock()
                .unwrap()
                .push(format!("stage {} ok={ok}", s.as_str()));
        }
    }

    #[test]
    fn a_request_ends_once_and_a_panicking_one_ends_as_internal() {
        let log = Arc::new(Log::default());
        let r = Request::start(log.clone(), Operation::Mount, "v");
        let s: Result<(), &str> = stage(&*log, Operation::Mount, "v", Stage::Publish, || Err("x"));
        assert!(s.is_err());
        r.done("engine");
        let shared: SharedObserver = log.clone();
        let h = std::thread::spawn(move || {
            let _r = Request::start(shared, Operation::Create, "w");
            panic!("worker dies");
        });
        assert!(h.join().is_err());
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "start mount v",
                "stage publish",
                "stage publish ok=false",
                "end mount v engine",
                "start create w",
                "end create w internal",
            ]
        );
    }

    #[test]
    fn every_stage_belongs_to_an_operation() {
        let all: std::collections::BTreeSet<Stage> = Operation::ALL
            .iter()
            .flat_map(|op| Stage::of(*op).iter().copied())
            .collect();
        assert_eq!(all.len(), 9, "{all:?}");
    }
}
