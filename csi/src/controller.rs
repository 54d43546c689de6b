//! The Controller service on the appliance.
//!
//! The mapping: a volume is a thin clone of a gold copy, named
//! [`volume_id_for`] the CO's name (`csi-pvc-…`); `CreateVolume` clones,
//! `DeleteVolume` deletes the clone, `ControllerPublishVolume` presents it
//! to the node's registered initiators (the node id is the host's name on
//! the appliance) and hands the presentation to the node in
//! `publish_context`, `ControllerUnpublishVolume` unpresents it. Gold
//! copies are listed as snapshots, so a PVC's `dataSource` may name one.
//! The service keeps no state of its own: the appliance's records are the
//! truth, and every call is repeatable.

use std::collections::HashMap;
use std::sync::Arc;

use appliance::client::Client;
use appliance::model::{
    Clone as ApplianceClone, CreateClone, Gold, Present, Presentation, Presented,
};
use tonic::{Code, Request, Response, Status};

use crate::appliance::{appliance_status, not_found, ApplianceAccess};
use crate::capability::read_only_of;
use crate::inflight::Inflight;
use crate::page::page;
use crate::params::{
    is_driver_volume, volume_id_for, Parameters, GOLD, POINT_IN_TIME, PROFILE, READ_ONLY,
};
use crate::proto::{
    controller_server::Controller, controller_service_capability, list_snapshots_response,
    list_volumes_response, validate_volume_capabilities_response, volume_content_source,
    ControllerExpandVolumeRequest, ControllerExpandVolumeResponse,
    ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse,
    ControllerGetVolumeRequest, ControllerGetVolumeResponse, ControllerModifyVolumeRequest,
    ControllerModifyVolumeResponse, ControllerPublishVolumeRequest,
    ControllerPublishVolumeResponse, ControllerServiceCapability, ControllerUnpublishVolumeRequest,
    ControllerUnpublishVolumeResponse, CreateSnapshotRequest, CreateSnapshotResponse,
    CreateVolumeRequest, CreateVolumeResponse, DeleteSnapshotRequest, DeleteSnapshotResponse,
    DeleteVolumeRequest, DeleteVolumeResponse, GetCapacityRequest, GetCapacityResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, ListVolumesRequest, ListVolumesResponse, Snapshot,
    ValidateVolumeCapabilitiesRequest, ValidateVolumeCapabilitiesResponse, Volume,
    VolumeCapability, VolumeContentSource,
};
use crate::source::PRESENTATION;
use crate::status::{task_failed, RequestError};

/// The Controller service over one appliance.
pub struct ControllerService {
    access: Arc<ApplianceAccess>,
    inflight: Inflight,
}

impl ControllerService {
    /// The service for the appliance `access` names.
    pub fn new(access: ApplianceAccess) -> Self {
        Self {
            access: Arc::new(access),
            inflight: Inflight::default(),
        }
    }

    /// Runs `f` with an appliance client on a blocking thread, with `key`
    /// (a volume id or name) marked in flight.
    async fn run<T, F>(&self, key: &str, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Client) -> Result<T, Status> + Send + 'static,
    {
        let guard = self.inflight.begin(key)?;
        let access = self.access.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(&access.client()?)
        })
        .await
        .map_err(task_failed)?
    }

    /// Runs a read-only listing on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Client) -> Result<T, Status> + Send + 'static,
    {
        let access = self.access.clone();
        tokio::task::spawn_blocking(move || f(&access.client()?))
            .await
            .map_err(task_failed)?
    }
}

fn required(field: &'static str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        Err(RequestError::Missing { field }.into())
    } else {
        Ok(())
    }
}

fn capabilities(caps: &[VolumeCapability]) -> Result<(), Status> {
    if caps.is_empty() {
        return Err(RequestError::Missing {
            field: "volume_capabilities",
        }
        .into());
    }
    for c in caps {
        read_only_of(Some(c))?;
    }
    Ok(())
}

/// The clone named `id`, `None` when the appliance has none or the id is
/// not one this driver makes.
fn clone_of(c: &Client, id: &str) -> Result<Option<ApplianceClone>, Status> {
    if !is_driver_volume(id) {
        return Ok(None);
    }
    match c.get_clone(id) {
        Ok(cl) => Ok(Some(cl)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(appliance_status(
            &format!("looking up volume {id}"),
            &e,
            Code::FailedPrecondition,
        )),
    }
}

fn presentation_of(c: &Client, id: &str) -> Result<Option<Presentation>, Status> {
    match c.get_presentation(id) {
        Ok(p) => Ok(Some(p)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(appliance_status(
            &format!("looking up the presentation of volume {id}"),
            &e,
            Code::FailedPrecondition,
        )),
    }
}

fn size_i64(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// What a volume's users need to know: its gold, point in time, profile
/// and whether it is mounted read-only.
fn volume_context(clone: &ApplianceClone, read_only: bool) -> HashMap<String, String> {
    let mut ctx = HashMap::from([
        (GOLD.to_string(), clone.gold.clone()),
        (POINT_IN_TIME.to_string(), clone.point_in_time.clone()),
        (READ_ONLY.to_string(), read_only.to_string()),
    ]);
    if let Some(p) = &clone.class {
        ctx.insert(PROFILE.to_string(), p.clone());
    }
    ctx
}

fn snapshot_source(gold: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: gold.to_string(),
            },
        )),
    }
}

/// The gold a CreateVolume names, by parameter or snapshot `dataSource`
/// (both: they must agree), and whether it came from the snapshot.
fn gold_of(r: &CreateVolumeRequest, p: &Parameters) -> Result<(String, bool), Status> {
    let from_snapshot = match r.volume_content_source.as_ref().and_then(|s| s.r#type.as_ref()) {
        None => None,
        Some(volume_content_source::Type::Snapshot(s)) => {
            required("volume_content_source.snapshot.snapshot_id", &s.snapshot_id)?;
            Some(s.snapshot_id.clone())
        }
        Some(volume_content_source::Type::Volume(_)) => {
            return Err(RequestError::Invalid {
                field: "volume_content_source",
                why: "cloning a volume is not supported (CLONE_VOLUME is not advertised): name a gold copy by parameters.gold or a snapshot dataSource".into(),
            }
            .into())
        }
    };
    match (&p.gold, from_snapshot) {
        (Some(g), Some(s)) if *g != s => Err(RequestError::Invalid {
            field: "volume_content_source",
            why: format!("the snapshot names gold copy {s:?}, the parameters name {g:?}: name one"),
        }
        .into()),
        (_, Some(s)) => Ok((s, true)),
        (Some(g), None) => Ok((g.clone(), false)),
        (None, None) => Err(RequestError::Missing {
            field: "parameters.gold (or a snapshot volume_content_source naming a gold copy)",
        }
        .into()),
    }
}

/// Refuses a capacity range the gold's size cannot meet: a clone is
/// exactly as big as its gold.
fn check_capacity(r: &CreateVolumeRequest, gold: &Gold) -> Result<(), Status> {
    let Some(range) = &r.capacity_range else {
        return Ok(());
    };
    let size = size_i64(gold.size);
    if range.required_bytes < 0 || range.limit_bytes < 0 {
        return Err(RequestError::Invalid {
            field: "capacity_range",
            why: "expected non-negative byte counts".into(),
        }
        .into());
    }
    if range.required_bytes > size || (range.limit_bytes > 0 && range.limit_bytes < size) {
        return Err(Status::out_of_range(format!(
            "a clone of gold copy {} is {size} bytes, the gold's size; the request asks for {} to {} bytes: ask for at most {size} bytes required and no limit below it",
            gold.name, range.required_bytes, range.limit_bytes
        )));
    }
    Ok(())
}

fn create(c: &Client, r: CreateVolumeRequest, id: String) -> Result<Volume, Status> {
    let p = Parameters::parse(&r.parameters)?;
    let (gold_name, from_snapshot) = gold_of(&r, &p)?;
    let gold = match c.get_gold(&gold_name) {
        Ok(g) => g,
        Err(e) if not_found(&e) => {
            let known: Vec<String> = c
                .list_golds()
                .map(|gs| gs.into_iter().map(|g| g.name).collect())
                .unwrap_or_default();
            let why = format!(
                "the appliance has no gold copy {gold_name:?}; it has: {}",
                known.join(", ")
            );
            return Err(if from_snapshot {
                Status::not_found(why)
            } else {
                RequestError::Invalid {
                    field: "parameters.gold",
                    why,
                }
                .into()
            });
        }
        Err(e) => {
            return Err(appliance_status(
                &format!("looking up gold copy {gold_name}"),
                &e,
                Code::FailedPrecondition,
            ))
        }
    };
    check_capacity(&r, &gold)?;
    if let Some(existing) = clone_of(c, &id)? {
        let same = existing.gold == gold.name
            && p.point_in_time
                .as_ref()
                .is_none_or(|pit| *pit == existing.point_in_time)
            && existing.class == p.profile;
        if !same {
            return Err(Status::already_exists(format!(
                "volume {id} (for name {:?}) exists as a clone of {} at {:?} with profile {:?}; this request asks for {} at {:?} with profile {:?}: use another name, or repeat the original request",
                r.name, existing.gold, existing.point_in_time, existing.class, gold.name, p.point_in_time, p.profile
            )));
        }
    }
    let clone = c
        .create_clone(&CreateClone {
            name: id.clone(),
            gold: gold.name.clone(),
            point_in_time: p.point_in_time.clone(),
            class: p.profile.clone(),
        })
        .map_err(|e| {
            appliance_status(
                &format!("cloning {} as volume {id}", gold.name),
                &e,
                Code::AlreadyExists,
            )
        })?;
    tracing::info!(volume = %id, gold = %clone.gold, "volume created");
    Ok(Volume {
        capacity_bytes: size_i64(clone.size),
        volume_id: id,
        volume_context: volume_context(&clone, p.read_only),
        content_source: from_snapshot.then(|| snapshot_source(&clone.gold)),
        accessible_topology: vec![],
    })
}

fn delete(c: &Client, id: &str) -> Result<(), Status> {
    if clone_of(c, id)?.is_none() {
        return Ok(());
    }
    if let Some(p) = presentation_of(c, id)? {
        return Err(Status::failed_precondition(format!(
            "volume {id} is still published to node {}: ControllerUnpublishVolume it first",
            p.host
        )));
    }
    match c.delete_clone(id) {
        Ok(()) => {
            tracing::info!(volume = %id, "volume deleted");
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(appliance_status(
            &format!("deleting volume {id}"),
            &e,
            Code::FailedPrecondition,
        )),
    }
}

/// The `publish_context` of a presentation: the presentation document the
/// node stages from, and its main facts for humans reading a
/// VolumeAttachment.
fn publish_context(p: &Presentation) -> Result<HashMap<String, String>, Status> {
    let doc = serde_json::to_string(p).map_err(|e| {
        Status::internal(format!(
            "the presentation could not be written as JSON: {e}"
        ))
    })?;
    let mut ctx = HashMap::from([(PRESENTATION.to_string(), doc)]);
    match &p.presented {
        Presented::Iscsi {
            target_iqn,
            portals,
            lun,
            wwn,
            ..
        } => {
            ctx.insert("transport".into(), "iscsi".into());
            ctx.insert("targetIQN".into(), target_iqn.clone());
            ctx.insert("portals".into(), portals.join(","));
            ctx.insert("lun".into(), lun.to_string());
            ctx.insert("wwn".into(), wwn.clone());
        }
        Presented::Loop { device, .. } => {
            ctx.insert("transport".into(), "loop".into());
            ctx.insert("loopDevice".into(), device.clone());
        }
    }
    Ok(ctx)
}

fn publish_to(c: &Client, id: &str, node: &str) -> Result<HashMap<String, String>, Status> {
    if clone_of(c, id)?.is_none() {
        return Err(Status::not_found(format!(
            "no volume {id} on the appliance"
        )));
    }
    if let Some(p) = presentation_of(c, id)? {
        if p.host != node {
            return Err(Status::failed_precondition(format!(
                "volume {id} is published to node {}; it can be published to one node at a time: unpublish it there first",
                p.host
            )));
        }
    }
    match c.get_host(node) {
        Ok(_) => {}
        Err(e) if not_found(&e) => {
            return Err(Status::not_found(format!(
                "the appliance knows no host {node:?}: the node id must be the host's registered name (goldmountd registers it)"
            )))
        }
        Err(e) => {
            return Err(appliance_status(
                &format!("looking up host {node}"),
                &e,
                Code::FailedPrecondition,
            ))
        }
    }
    let p = c
        .present(&Present {
            clone: id.to_string(),
            host: node.to_string(),
        })
        .map_err(|e| {
            appliance_status(
                &format!("presenting volume {id} to {node}"),
                &e,
                Code::FailedPrecondition,
            )
        })?;
    tracing::info!(volume = %id, node, "volume published");
    publish_context(&p)
}

fn unpublish_from(c: &Client, id: &str, node: &str) -> Result<(), Status> {
    if clone_of(c, id)?.is_none() {
        return Ok(());
    }
    let Some(p) = presentation_of(c, id)? else {
        return Ok(());
    };
    if !node.is_empty() && p.host != node {
        return Ok(());
    }
    // The appliance asks a host's connector whether it released a clone
    // before it unpresents; a CSI node has no such callback. The CO is the
    // party that knows: it calls ControllerUnpublishVolume only after the
    // node answered NodeUnstageVolume (kubelet reports the volume no longer
    // in use), so the unpresent is forced.
    match c.unpresent_forced(id) {
        Ok(()) => {
            tracing::info!(volume = %id, node = %p.host, "volume unpublished");
            Ok(())
        }
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(appliance_status(
            &format!("unpresenting volume {id} from {}", p.host),
            &e,
            Code::FailedPrecondition,
        )),
    }
}

fn controller_rpc(t: controller_service_capability::rpc::Type) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(controller_service_capability::Type::Rpc(
            controller_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let r = request.into_inner();
        required("name", &r.name)?;
        capabilities(&r.volume_capabilities)?;
        let id = volume_id_for(&r.name);
        let key = id.clone();
        let volume = self.run(&key, move |c| create(c, r, id)).await?;
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let r = request.into_inner();
        required("volume_id", &r.volume_id)?;
        let id = r.volume_id.clone();
        self.run(&r.volume_id, move |c| delete(c, &id)).await?;
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let r = request.into_inner();
        required("volume_id", &r.volume_id)?;
        required("node_id", &r.node_id)?;
        read_only_of(r.volume_capability.as_ref())?;
        let (id, node) = (r.volume_id.clone(), r.node_id.clone());
        let ctx = self
            .run(&r.volume_id, move |c| publish_to(c, &id, &node))
            .await?;
        Ok(Response::new(ControllerPublishVolumeResponse {
            publish_context: ctx,
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let r = request.into_inner();
        required("volume_id", &r.volume_id)?;
        let (id, node) = (r.volume_id.clone(), r.node_id.clone());
        self.run(&r.volume_id, move |c| unpublish_from(c, &id, &node))
            .await?;
        Ok(Response::new(ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let r = request.into_inner();
        required("volume_id", &r.volume_id)?;
        if r.volume_capabilities.is_empty() {
            return Err(RequestError::Missing {
                field: "volume_capabilities",
            }
            .into());
        }
        let id = r.volume_id.clone();
        let clone = self.read(move |c| clone_of(c, &id)).await?.ok_or_else(|| {
            Status::not_found(format!("no volume {} on the appliance", r.volume_id))
        })?;
        let unsupported: Vec<String> = r
            .volume_capabilities
            .iter()
            .filter_map(|c| read_only_of(Some(c)).err().map(|e| e.to_string()))
            .collect();
        let mismatch = match Parameters::parse(&r.parameters) {
            Err(e) => Some(e.to_string()),
            Ok(p) if p.gold.as_ref().is_some_and(|g| *g != clone.gold) => Some(format!(
                "the volume is a clone of {}, the parameters name {:?}",
                clone.gold, p.gold
            )),
            Ok(p) if p.profile.is_some() && p.profile != clone.class => Some(format!(
                "the volume has profile {:?}, the parameters name {:?}",
                clone.class, p.profile
            )),
            Ok(_) => None,
        };
        let message = unsupported.into_iter().chain(mismatch).collect::<Vec<_>>();
        if !message.is_empty() {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: message.join("; "),
            }));
        }
        Ok(Response::new(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(validate_volume_capabilities_response::Confirmed {
                volume_context: r.volume_context,
                volume_capabilities: r.volume_capabilities,
                parameters: r.parameters,
                mutable_parameters: r.mutable_parameters,
            }),
            message: String::new(),
        }))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let r = request.into_inner();
        let (clones, presentations) = self
            .read(|c| {
                let clones = c.list_clones().map_err(|e| {
                    appliance_status("listing clones", &e, Code::FailedPrecondition)
                })?;
                let ps = c.list_presentations().map_err(|e| {
                    appliance_status("listing presentations", &e, Code::FailedPrecondition)
                })?;
                Ok((clones, ps))
            })
            .await?;
        let ours: Vec<ApplianceClone> = clones
            .into_iter()
            .filter(|c| is_driver_volume(&c.name))
            .collect();
        let (entries, next_token) = page(ours, |c| &c.name, r.max_entries, &r.starting_token)?;
        let entries = entries
            .into_iter()
            .map(|cl| {
                let nodes = presentations
                    .iter()
                    .filter(|p| p.clone == cl.name)
                    .map(|p| p.host.clone())
                    .collect();
                list_volumes_response::Entry {
                    volume: Some(Volume {
                        capacity_bytes: size_i64(cl.size),
                        volume_id: cl.name.clone(),
                        volume_context: volume_context(&cl, false),
                        content_source: None,
                        accessible_topology: vec![],
                    }),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids: nodes,
                        volume_condition: None,
                    }),
                }
            })
            .collect();
        Ok(Response::new(ListVolumesResponse {
            entries,
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        _request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        Err(Status::unimplemented(
            "the appliance does not report free capacity (GET_CAPACITY is not advertised)",
        ))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        use controller_service_capability::rpc::Type;
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: [
                Type::CreateDeleteVolume,
                Type::PublishUnpublishVolume,
                Type::ListVolumes,
                Type::ListVolumesPublishedNodes,
                Type::ListSnapshots,
            ]
            .into_iter()
            .map(controller_rpc)
            .collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        _request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "snapshots are the appliance's gold copies, imported there (CREATE_DELETE_SNAPSHOT is not advertised)",
        ))
    }

    async fn delete_snapshot(
        &self,
        _request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "gold copies are not deleted through the CSI driver (CREATE_DELETE_SNAPSHOT is not advertised)",
        ))
    }

    /// Gold copies, as snapshots: `snapshot_id` is the gold's name, its
    /// source the gold's own name too (a gold copy has no CSI volume).
    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let r = request.into_inner();
        let golds = self
            .read(|c| {
                c.list_golds().map_err(|e| {
                    appliance_status("listing gold copies", &e, Code::FailedPrecondition)
                })
            })
            .await?;
        let wanted: Vec<Gold> = golds
            .into_iter()
            .filter(|g| r.snapshot_id.is_empty() || g.name == r.snapshot_id)
            .filter(|g| r.source_volume_id.is_empty() || g.name == r.source_volume_id)
            .collect();
        let (golds, next_token) = page(wanted, |g| &g.name, r.max_entries, &r.starting_token)?;
        let entries = golds
            .into_iter()
            .map(|g| list_snapshots_response::Entry {
                snapshot: Some(Snapshot {
                    size_bytes: size_i64(g.size),
                    snapshot_id: g.name.clone(),
                    source_volume_id: g.name.clone(),
                    creation_time: Some(prost_types::Timestamp {
                        seconds: i64::try_from(g.created).unwrap_or(0),
                        nanos: 0,
                    }),
                    ready_to_use: true,
                    group_snapshot_id: String::new(),
                }),
            })
            .collect();
        Ok(Response::new(ListSnapshotsResponse {
            entries,
            next_token,
        }))
    }

    async fn controller_expand_volume(
        &self,
        _request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "a clone of a gold copy is not expanded (EXPAND_VOLUME is not advertised)",
        ))
    }

    async fn controller_get_volume(
        &self,
        _request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "GET_VOLUME is not advertised: ListVolumes gives each volume's nodes",
        ))
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "a volume's parameters are fixed at creation (MODIFY_VOLUME is not advertised)",
        ))
    }
}
