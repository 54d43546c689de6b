//! The Node service on the engine.
//!
//! The mapping: `NodeStageVolume` has the engine attach the device from the
//! `publish_context` (see [`crate::source`]) and mount the whole tree at
//! its own volume path (`<volumes_root>/<volume_id>`), then publishes that
//! tree at the staging path as consumer [`STAGE_ID`] (a recursive bind) —
//! the CO sees the tree at the staging path, and the engine's records say
//! it is staged. `NodePublishVolume` publishes the same tree at the target
//! path as consumer [`publication_id`] of the target (every submount
//! read-only when asked). Unpublish and unstage undo those through the
//! engine. The engine's own checks (journal first, claims, busy locks)
//! stay in charge; this service adds the CSI rules: required fields,
//! repeated calls answered OK without adding references, incompatible
//! repeats refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use connector::engine::{
    DeviceSource, Engine, ErrorKind, MountOptions, MountRequest, VolumeName, VolumeStatus,
};
use tonic::{Code, Request, Response, Status};

use crate::capability::read_only_of;
use crate::config::NodeConfig;
use crate::health::tree_problems;
use crate::inflight::Inflight;
use crate::params::context_read_only;
use crate::proto::{
    node_server::Node, node_service_capability, NodeExpandVolumeRequest, NodeExpandVolumeResponse,
    NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse, NodeGetInfoRequest,
    NodeGetInfoResponse, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse,
    NodePublishVolumeRequest, NodePublishVolumeResponse, NodeServiceCapability,
    NodeStageVolumeRequest, NodeStageVolumeResponse, NodeUnpublishVolumeRequest,
    NodeUnpublishVolumeResponse, NodeUnstageVolumeRequest, NodeUnstageVolumeResponse,
};
use crate::reconcile::is_live;
use crate::source;
use crate::stats::tree_stats;
use crate::status::{engine_status, task_failed, RequestError};

/// The engine consumer id of a volume's staging bind.
pub const STAGE_ID: &str = "csi-stage";

/// The engine consumer id of a publication at `target`: stable across
/// restarts (FNV-1a of the path), short enough for any kubelet path.
pub fn publication_id(target: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    format!(
        "csi-publish-{:016x}",
        crate::params::fnv1a64(target.as_os_str().as_bytes())
    )
}

/// The Node service over one engine.
pub struct NodeService {
    engine: Arc<Engine>,
    cfg: NodeConfig,
    inflight: Inflight,
}

impl NodeService {
    /// The service for `engine` on the node `cfg` describes.
    pub fn new(engine: Arc<Engine>, cfg: NodeConfig) -> Self {
        Self {
            engine,
            cfg,
            inflight: Inflight::default(),
        }
    }

    /// Runs `f` on a blocking thread with the volume marked in flight.
    async fn run<T, F>(&self, volume: &VolumeName, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, Status> + Send + 'static,
    {
        let guard = self.inflight.begin(volume.as_str())?;
        let engine = self.engine.clone();
        // The guard lives as long as the engine call, not the request: a
        // CO that gives up on a call does not stop it, and the next call
        // on the volume must not start before it ends.
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(&engine)
        })
        .await
        .map_err(task_failed)?
    }
}

fn volume_of(id: &str) -> Result<VolumeName, Status> {
    if id.is_empty() {
        return Err(RequestError::Missing { field: "volume_id" }.into());
    }
    VolumeName::parse(id).map_err(|e| {
        RequestError::Invalid {
            field: "volume_id",
            why: e.message,
        }
        .into()
    })
}

fn path_of(field: &'static str, value: &str) -> Result<PathBuf, RequestError> {
    if value.is_empty() {
        return Err(RequestError::Missing { field });
    }
    let p = PathBuf::from(value);
    if !p.is_absolute() {
        return Err(RequestError::Invalid {
            field,
            why: format!("expected an absolute path, found {value:?}"),
        });
    }
    Ok(p)
}

/// The volume's status, `None` when this node has no such volume.
fn status_of(engine: &Engine, volume: &VolumeName) -> Result<Option<VolumeStatus>, Status> {
    match engine.get(volume) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(engine_status(&e, Code::FailedPrecondition)),
    }
}

fn live_mounts() -> Result<Vec<mountinfo::MountEntry>, Status> {
    mountinfo::current().map_err(|e| {
        Status::internal(format!(
            "cannot read /proc/self/mountinfo ({e}): the plugin must see the host's mounts (hostPID or the kubelet's mount namespace)"
        ))
    })
}

fn volume_stats(
    engine: &Engine,
    volume: &VolumeName,
    path: &Path,
) -> Result<NodeGetVolumeStatsResponse, Status> {
    let st = status_of(engine, volume)?
        .ok_or_else(|| Status::not_found(format!("no volume {volume} on this node")))?;
    let p = st
        .publications
        .iter()
        .find(|p| p.target == path)
        .ok_or_else(|| {
            Status::not_found(format!(
                "volume {volume} is not staged or published at {} on this node",
                path.display()
            ))
        })?;
    let mounts = live_mounts()?;
    let live = is_live(p, &mounts);
    let stats = tree_stats(path, if live { &mounts } else { &[] });
    let problems = tree_problems(&st, &mounts);
    Ok(NodeGetVolumeStatsResponse {
        usage: if live { stats.usage() } else { vec![] },
        volume_condition: Some(stats.condition(live, &problems)),
    })
}

fn stage(
    engine: &Engine,
    volume: &VolumeName,
    staging: &Path,
    source: DeviceSource,
    read_only: bool,
) -> Result<(), Status> {
    if let Some(st) = status_of(engine, volume)? {
        let wanted = vec![source.recorded()];
        if st.sources != wanted || st.read_only != read_only {
            return Err(Status::already_exists(format!(
                "volume {volume} is staged on this node from {:?} (read-only: {}); this request asks for {:?} (read-only: {read_only}): unstage it first, or repeat the request it was staged with",
                st.sources, st.read_only, wanted
            )));
        }
    }
    let req = MountRequest {
        volume: volume.clone(),
        sources: vec![source],
        options: MountOptions {
            read_only,
            ..MountOptions::default()
        },
    };
    let created = engine
        .mount(&req)
        .map_err(|e| engine_status(&e, Code::FailedPrecondition))?
        .created();
    let st = status_of(engine, volume)?.ok_or_else(|| {
        Status::internal(format!(
            "volume {volume} vanished right after its mount: retry NodeStageVolume"
        ))
    })?;
    if let Some(p) = st.publications.iter().find(|p| p.id == STAGE_ID) {
        if p.target != staging {
            return Err(Status::already_exists(format!(
                "volume {volume} is already staged at {}, not at {}: unstage it there first",
                p.target.display(),
                staging.display()
            )));
        }
        let mounts = live_mounts()?;
        if is_live(p, &mounts) {
            let problems = tree_problems(&st, &mounts);
            if problems.is_empty() {
                return Ok(());
            }
            return Err(Status::failed_precondition(format!(
                "volume {volume} is staged, but its tree is not whole: {}; NodeUnstageVolume it and stage it again",
                problems.join("; ")
            )));
        }
        // Recorded, but its bind is gone (unmounted behind the plugin's
        // back): drop the record and bind again.
        tracing::warn!(volume = %volume, staging = %staging.display(), "staging bind gone: binding again");
        engine
            .unpublish(volume, STAGE_ID, false)
            .map_err(|e| engine_status(&e, Code::FailedPrecondition))?;
    }
    match engine.publish(volume, STAGE_ID, staging, read_only) {
        Ok(_) => Ok(()),
        Err(e) => {
            if created {
                // Nothing of this call stays behind it.
                if let Err(u) = engine.unmount(volume, false) {
                    tracing::warn!(volume = %volume, error = %u.message, "mount of a failed stage left");
                }
            }
            Err(engine_status(&e, Code::AlreadyExists))
        }
    }
}

fn unstage(engine: &Engine, volume: &VolumeName, staging: &Path) -> Result<(), Status> {
    let Some(st) = status_of(engine, volume)? else {
        return Ok(());
    };
    let others: Vec<String> = st
        .publications
        .iter()
        .filter(|p| p.id != STAGE_ID)
        .map(|p| p.target.display().to_string())
        .collect();
    if !others.is_empty() {
        return Err(Status::failed_precondition(format!(
            "volume {volume} is still published at {}: NodeUnpublishVolume those first",
            others.join(", ")
        )));
    }
    if let Some(p) = st.publications.iter().find(|p| p.id == STAGE_ID) {
        if p.target != staging {
            return Err(Status::failed_precondition(format!(
                "volume {volume} is staged at {}, not at {}: unstage it there",
                p.target.display(),
                staging.display()
            )));
        }
        engine
            .unpublish(volume, STAGE_ID, false)
            .map_err(|e| engine_status(&e, Code::FailedPrecondition))?;
    }
    match engine.unmount(volume, false) {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(engine_status(&e, Code::FailedPrecondition)),
    }
}

fn publish(
    engine: &Engine,
    volume: &VolumeName,
    staging: &Path,
    target: &Path,
    read_only: bool,
) -> Result<(), Status> {
    let not_staged = || {
        Status::failed_precondition(format!(
            "volume {volume} is not staged at {} on this node: call NodeStageVolume first",
            staging.display()
        ))
    };
    let st = status_of(engine, volume)?.ok_or_else(not_staged)?;
    let mounts = live_mounts()?;
    let staged = st
        .publications
        .iter()
        .any(|p| p.id == STAGE_ID && p.target == staging && is_live(p, &mounts));
    if !staged {
        return Err(not_staged());
    }
    let read_only = read_only || st.read_only;
    let id = publication_id(target);
    if let Some(p) = st.publications.iter().find(|p| p.id == id) {
        if p.read_only != read_only {
            return Err(Status::already_exists(format!(
                "volume {volume} is already published at {} with read-only {}: unpublish it first",
                target.display(),
                p.read_only
            )));
        }
        if is_live(p, &mounts) {
            return Ok(());
        }
        tracing::warn!(volume = %volume, target = %target.display(), "published bind gone: binding again");
        engine
            .unpublish(volume, &id, false)
            .map_err(|e| engine_status(&e, Code::FailedPrecondition))?;
    }
    engine
        .publish(volume, &id, target, read_only)
        .map(|_| ())
        .map_err(|e| engine_status(&e, Code::AlreadyExists))
}

fn unpublish(engine: &Engine, volume: &VolumeName, target: &Path) -> Result<(), Status> {
    let id = publication_id(target);
    if let Some(st) = status_of(engine, volume)? {
        if st.publications.iter().any(|p| p.id == id) {
            engine
                .unpublish(volume, &id, false)
                .map_err(|e| engine_status(&e, Code::FailedPrecondition))?;
        }
    }
    // The engine removes the directories it made; a target the CO made
    // itself goes too, as the spec asks (only when empty: never data).
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            tracing::warn!(target = %target.display(), error = %e, "target path left");
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let r = request.into_inner();
        let volume = volume_of(&r.volume_id)?;
        let staging = path_of("staging_target_path", &r.staging_target_path)?;
        let read_only =
            read_only_of(r.volume_capability.as_ref())? || context_read_only(&r.volume_context)?;
        let source = source::from_publish_context(&r.publish_context)?;
        let v = volume.clone();
        self.run(&volume, move |e| stage(e, &v, &staging, source, read_only))
            .await?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let r = request.into_inner();
        let volume = volume_of(&r.volume_id)?;
        let staging = path_of("staging_target_path", &r.staging_target_path)?;
        let v = volume.clone();
        self.run(&volume, move |e| unstage(e, &v, &staging)).await?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let r = request.into_inner();
        let volume = volume_of(&r.volume_id)?;
        let staging = path_of("staging_target_path", &r.staging_target_path)?;
        let target = path_of("target_path", &r.target_path)?;
        let read_only = read_only_of(r.volume_capability.as_ref())?
            || r.readonly
            || context_read_only(&r.volume_context)?;
        let v = volume.clone();
        self.run(&volume, move |e| {
            publish(e, &v, &staging, &target, read_only)
        })
        .await?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let r = request.into_inner();
        let volume = volume_of(&r.volume_id)?;
        let target = path_of("target_path", &r.target_path)?;
        let v = volume.clone();
        self.run(&volume, move |e| unpublish(e, &v, &target))
            .await?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    /// The sums over the tree's filesystems; see [`crate::stats`].
    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let r = request.into_inner();
        let volume = volume_of(&r.volume_id)?;
        let path = path_of("volume_path", &r.volume_path)?;
        let engine = self.engine.clone();
        // A read: not serialised with the volume's operations.
        let resp = tokio::task::spawn_blocking(move || volume_stats(&engine, &volume, &path))
            .await
            .map_err(task_failed)??;
        Ok(Response::new(resp))
    }

    async fn node_expand_volume(
        &self,
        _request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "a clone of a gold copy is not expanded (EXPAND_VOLUME is not advertised)",
        ))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        use node_service_capability::rpc::Type;
        let rpc = |t: Type| NodeServiceCapability {
            r#type: Some(node_service_capability::Type::Rpc(
                node_service_capability::Rpc { r#type: t as i32 },
            )),
        };
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![
                rpc(Type::StageUnstageVolume),
                rpc(Type::GetVolumeStats),
                rpc(Type::VolumeCondition),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.cfg.node_id.clone(),
            max_volumes_per_node: self.cfg.max_volumes_per_node,
            accessible_topology: None,
        }))
    }
}
