//! The Identity service: who the plugin is, what it offers, whether it is
//! ready (the node's engine state store answers; the controller's
//! appliance answers an authenticated call).

use std::sync::Arc;

use connector::engine::Engine;
use tonic::{Code, Request, Response, Status};

use crate::appliance::{appliance_status, ApplianceAccess};

use crate::proto::{
    identity_server::Identity, plugin_capability, GetPluginCapabilitiesRequest,
    GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability,
    ProbeRequest, ProbeResponse,
};
use crate::status::task_failed;

/// What the plugin depends on to be ready.
#[derive(Clone)]
pub enum Readiness {
    /// The node plugin: its engine.
    Engine(Arc<Engine>),
    /// The controller: its appliance.
    Appliance(Arc<ApplianceAccess>),
}

/// Identity of the node plugin or the controller.
pub struct IdentityService {
    ready: Readiness,
}

impl IdentityService {
    /// The node plugin's Identity, ready when `engine` answers.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            ready: Readiness::Engine(engine),
        }
    }

    /// The controller's Identity, ready when the appliance answers.
    pub fn for_controller(access: ApplianceAccess) -> Self {
        Self {
            ready: Readiness::Appliance(Arc::new(access)),
        }
    }
}

fn probe(ready: Readiness) -> Result<(), Status> {
    match ready {
        Readiness::Engine(engine) => engine.list().map(|_| ()).map_err(|e| {
            Status::failed_precondition(format!(
                "the state store does not answer: {}; check {} and restart the plugin",
                e.message,
                engine.config().state_path.display()
            ))
        }),
        Readiness::Appliance(access) => {
            access.client()?.list_golds().map(|_| ()).map_err(|e| {
                appliance_status("probing the appliance", &e, Code::FailedPrecondition)
            })
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: crate::DRIVER_NAME.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let controller = PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service {
                    r#type: plugin_capability::service::Type::ControllerService as i32,
                },
            )),
        };
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![controller],
        }))
    }

    /// Ready when the engine's state store answers a listing (node) or the
    /// appliance answers an authenticated listing (controller); an error
    /// (not "not ready") when it does not, so the CO restarts the plugin
    /// and a human reads why.
    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let ready = self.ready.clone();
        tokio::task::spawn_blocking(move || probe(ready))
            .await
            .map_err(task_failed)??;
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
