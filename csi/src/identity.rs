//! The Identity service: who the plugin is, what it offers, whether it is
//! ready (its engine's state store answers).

use std::sync::Arc;

use connector::engine::Engine;
use tonic::{Request, Response, Status};

use crate::proto::{
    identity_server::Identity, plugin_capability, GetPluginCapabilitiesRequest,
    GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability,
    ProbeRequest, ProbeResponse,
};
use crate::status::task_failed;

/// Identity over one engine.
pub struct IdentityService {
    engine: Arc<Engine>,
}

impl IdentityService {
    /// The service for `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
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

    /// Ready when the engine's state store answers a listing; an error
    /// (not "not ready") when it does not, so the CO restarts the plugin.
    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.list())
            .await
            .map_err(task_failed)?
            .map_err(|e| {
                Status::failed_precondition(format!(
                    "the state store does not answer: {}; check {} and restart the plugin",
                    e.message,
                    self.engine.config().state_path.display()
                ))
            })?;
        Ok(Response::new(ProbeResponse { ready: Some(true) }))
    }
}
