//! Runs the Docker volume plugin beside the control API: the same engine,
//! the appliance of `[appliance]`, this host's name from `[docker] host`
//! or else from registration. Stopped with the daemon; requests in flight
//! finish within the grace period. Its requests and their stages are
//! counted in `/metrics` ([`DockerMetrics`]).

use std::sync::Arc;
use std::time::Duration;

use connector::engine::Engine;
use dockerplugin::profile::Profiles;
use dockerplugin::{ApplianceAccess, ApplianceLink, Driver, PluginServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::DockerMetrics;

/// The running plugin.
pub struct DockerTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts the plugin when `[docker]` asks for it (`Ok(None)` otherwise),
/// resolving `NAME@profile` through `profiles` (the control API's, so a
/// PUT there applies to the next create). Must run inside the runtime.
pub fn start(
    cfg: &Config,
    engine: Arc<Engine>,
    profiles: Arc<Profiles>,
) -> Result<Option<DockerTask>, String> {
    let Some(docker) = cfg.docker.clone().filter(|d| d.enabled) else {
        return Ok(None);
    };
    let appliance = cfg
        .appliance
        .as_ref()
        .ok_or("[docker] needs an [appliance] section: the plugin clones gold copies there")?;
    let access = ApplianceAccess {
        url: appliance.url.clone(),
        ca: appliance.ca.clone(),
        token_file: appliance.token_file.clone(),
    };
    let fixed = docker.host.clone();
    let host = Arc::new(move || {
        fixed
            .clone()
            .or_else(|| crate::registration_task::snapshot().host)
    });
    let driver = Driver::open(&docker, engine, ApplianceLink::new(access, host))
        .map_err(|e| e.to_string())?
        .with_profiles(profiles)
        .with_observer(Arc::new(DockerMetrics::global().clone()));
    let store = driver.store_path().to_path_buf();
    let server =
        PluginServer::bind(&docker.socket_path(), Arc::new(driver)).map_err(|e| e.to_string())?;
    tracing::info!(driver = %docker.name, socket = %server.path().display(), state = %store.display(), "Docker volume plugin listening");
    let (stop, mut rx) = watch::channel(false);
    let grace = cfg.control.shutdown_grace();
    let task = tokio::spawn(server.run(
        async move {
            let _ = rx.changed().await;
        },
        grace,
    ));
    Ok(Some(DockerTask { stop, task }))
}

impl DockerTask {
    /// Tells the plugin to stop accepting (see [`stop`](Self::stop)).
    pub fn signal(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting and waits (at most `grace`) for requests in flight.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("the Docker plugin did not stop within the grace period");
        }
    }
}
