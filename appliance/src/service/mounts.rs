//! The one-call mount: `POST /v1/mounts` clones a gold copy, presents the
//! clone to a host and has the host's connector mount it (and publish it at
//! a path) — one synchronous call with a deadline; `DELETE /v1/mounts/{v}`
//! takes it all down again in the reverse order.
//!
//! The mount is recorded before the first step and after each, so the same
//! request after a crash resumes (every step is idempotent), and a failure
//! at the connector undoes the appliance's own steps — but only what is
//! safe to undo: a clone is unpresented only once the connector never got
//! the request or has confirmed that no volume on the host uses it.
//!
//! When the connector's answer is lost (the connection broke or timed out
//! mid-call — the host daemon crashed, restarted, or is slow), the appliance
//! does not guess: it asks the connector `GET /v1/volumes/{volume}` until it
//! settles (retrying while the daemon restarts, for a quarter of the mount
//! deadline, 5–60 s). Mounted from the clone: the mount is kept (the same
//! PUT again fetches its manifest and publication). Absent: the host rolled
//! back, so clone and presentation are undone. No answer: the record is
//! kept as `host_unknown` with the reason — never deleted on a guess.

use super::{Appliance, Outcome, Reservation};
use crate::callback::{self, Usage};
use crate::connector_api::{self, CallError};
use crate::error::{ConnectorFailure, Error, ErrorCode};
use crate::model::{
    now, CreateClone, Host, HostState, HostVolumeState, Mount, MountPhase, MountRequest,
    MountTimings, Present, Presented, Unmounted,
};
use crate::names::validate_name;
use crate::store::Kind;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Default for [`crate::ApplianceConfig::mount_deadline`].
pub const DEFAULT_MOUNT_DEADLINE: Duration = Duration::from_secs(300);

/// The longest the appliance keeps asking a connector what it did with a
/// request whose answer was lost (see [`Appliance::settle_grace`]).
const SETTLE_GRACE_MAX: Duration = Duration::from_secs(60);

/// The shortest such wait: a daemon restarted by systemd answers again
/// within a few seconds.
const SETTLE_GRACE_MIN: Duration = Duration::from_secs(5);

/// How often the connector is asked again while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(500);

/// Default for [`crate::ApplianceConfig::lun_wait`].
pub const DEFAULT_LUN_WAIT: Duration = Duration::from_secs(60);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn same_request(m: &Mount, r: &MountRequest) -> bool {
    m.gold == r.gold && m.host == r.host && m.path == r.path && m.read_only == r.read_only
}

/// The connector's source for a presentation, with a LUN wait of at most
/// `lun_wait` that fits in `remaining`.
fn source_for(p: &Presented, lun_wait: Duration, remaining: Duration) -> Value {
    let wait = remaining
        .as_secs()
        .saturating_sub(5)
        .min(lun_wait.as_secs())
        .max(1);
    match p {
        Presented::Iscsi {
            target_iqn,
            portals,
            lun,
            wwn,
            serial,
        } => json!({
            "kind": "iscsi",
            "presentation": {
                "target_iqn": target_iqn, "portals": portals, "lun": lun,
                "wwn": wwn, "serial": serial,
            },
            "timeout": wait,
        }),
        Presented::Loop { backing_file, .. } => json!({
            "kind": "loop_backing", "file": backing_file, "timeout": wait,
        }),
    }
}

impl Appliance {
    /// Reserves `mount/<volume>` so one volume has one mount or unmount
    /// running at a time; call with the lock held.
    fn reserve_mount(&self, volume: &str) -> Result<Reservation<'_>, Error> {
        let key = format!("mount/{volume}");
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !p.insert(key.clone()) {
            return Err(Error::Conflict(format!(
                "volume {volume:?} is being mounted or unmounted by another request; retry when \
                 it has finished (GET /v1/mounts/{volume})"
            )));
        }
        Ok(Reservation { app: self, key })
    }

    /// A clone name for `volume`: the volume's own when free, else
    /// `<volume>-N`. Call with the lock held.
    fn clone_name_for(&self, volume: &str) -> Result<String, Error> {
        let taken = |n: &str| -> Result<bool, Error> {
            let pending = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&format!("clone/{n}"));
            Ok(pending
                || self
                    .store
                    .get::<crate::model::Clone>(Kind::Clone, n)?
                    .is_some()
                || self
                    .store
                    .list::<Mount>(Kind::Mount)?
                    .iter()
                    .any(|m| m.clone == n))
        };
        if !taken(volume)? {
            return Ok(volume.to_string());
        }
        for i in 2..1000 {
            let n = format!("{volume}-{i}");
            if validate_name("clone", &n).is_ok() && !taken(&n)? {
                return Ok(n);
            }
        }
        Err(Error::Conflict(format!(
            "no free clone name for volume {volume:?} ({volume} and {volume}-2..999 are taken)"
        )))
    }

    fn connector_of(&self, host: &Host, timeout: Duration) -> Result<(ureq::Agent, String), Error> {
        callback::connector_agent(self.client_identity.as_ref(), host, timeout).map_err(|why| {
            Error::Invalid(format!(
                "host {:?}: the appliance mounts through the host's connector, and {why}",
                host.name
            ))
        })
    }

    /// Clones `req.gold`, presents the clone to `req.host` and has the
    /// host's connector mount it as `req.volume` (published at `req.path`)
    /// within the configured deadline. The same request again answers the
    /// stored mount ([`Outcome::Existing`]); another request for the same
    /// volume is a conflict. When the connector fails, the appliance's own
    /// steps are undone where that is safe, and the error says what the
    /// connector answered, what was undone and what was left.
    pub fn mount(&self, req: MountRequest) -> Result<(Mount, Outcome), Error> {
        let t0 = Instant::now();
        let deadline = t0 + self.mount_deadline;
        validate_name("volume", &req.volume)?;
        validate_name("gold copy", &req.gold)?;
        validate_name("host", &req.host)?;
        if let Some(p) = &req.path {
            if !p.starts_with('/') || p.contains('\0') || p.len() > 4096 {
                return Err(Error::Invalid(format!(
                    "path: expected an absolute path on the host (at most 4096 bytes), found {p:?}"
                )));
            }
        }
        let (reservation, mut rec, host, resumed) = {
            let _g = self.guard();
            let reservation = self.reserve_mount(&req.volume)?;
            let host = self.need_host(&req.host)?;
            match self.store.get::<Mount>(Kind::Mount, &req.volume)? {
                Some(m) if !same_request(&m, &req) => {
                    return Err(Error::Conflict(format!(
                        "volume {:?} is already mounted from gold copy {:?} on host {:?} at {:?} \
                         (read_only {}); this request asks for {:?} on {:?} at {:?} (read_only \
                         {}). Unmount it first (DELETE /v1/mounts/{})",
                        m.volume,
                        m.gold,
                        m.host,
                        m.path,
                        m.read_only,
                        req.gold,
                        req.host,
                        req.path,
                        req.read_only,
                        m.volume
                    )))
                }
                Some(m) if m.phase == MountPhase::Mounted => return Ok((m, Outcome::Existing)),
                Some(m) if m.phase == MountPhase::Unmounting => {
                    return Err(Error::Conflict(format!(
                        "volume {:?} is being unmounted (a teardown stopped half-way); finish it \
                         with DELETE /v1/mounts/{} first",
                        m.volume, m.volume
                    )))
                }
                Some(m) => {
                    tracing::info!(volume = %m.volume, clone = %m.clone, "resuming a mount that did not finish");
                    (reservation, m, host, true)
                }
                None => {
                    self.get_gold(&req.gold)?;
                    // Fail before any step when the connector cannot be called.
                    self.connector_of(&host, Duration::from_secs(1))?;
                    let m = Mount {
                        volume: req.volume.clone(),
                        gold: req.gold.clone(),
                        host: req.host.clone(),
                        path: req.path.clone(),
                        read_only: req.read_only,
                        phase: MountPhase::Mounting,
                        clone: self.clone_name_for(&req.volume)?,
                        presentation: None,
                        manifest: None,
                        publication: None,
                        timings: MountTimings::default(),
                        created: now(),
                        host_state: None,
                    };
                    self.store.put(Kind::Mount, &m.volume, &m)?;
                    (reservation, m, host, false)
                }
            }
        };

        // 1. The clone.
        let t = Instant::now();
        let made = self.create_clone(CreateClone {
            name: rec.clone.clone(),
            gold: rec.gold.clone(),
            point_in_time: None,
            class: None,
        });
        match made {
            Ok((_, Outcome::Created)) => {}
            Ok((_, Outcome::Existing)) if resumed => {}
            Ok((c, Outcome::Existing)) => {
                // Someone created it between the name check and now: not ours.
                self.store.delete(Kind::Mount, &rec.volume)?;
                return Err(Error::Conflict(format!(
                    "clone {:?} was created by another request while this mount was starting; \
                     retry",
                    c.name
                )));
            }
            Err(e) => {
                self.store.delete(Kind::Mount, &rec.volume)?;
                return Err(e);
            }
        }
        rec.timings.clone_ms = ms(t.elapsed());

        // 2. The presentation.
        let t = Instant::now();
        let p = match self.present(Present {
            clone: rec.clone.clone(),
            host: rec.host.clone(),
        }) {
            Ok((p, _)) => p,
            Err(e) => {
                let undo = self.delete_clone(&rec.clone);
                if undo.is_ok() {
                    self.store.delete(Kind::Mount, &rec.volume)?;
                }
                return Err(e);
            }
        };
        rec.timings.present_ms = ms(t.elapsed());
        rec.presentation = Some(p.clone());
        self.store.put(Kind::Mount, &rec.volume, &rec)?;

        // 3. The host's connector.
        let t = Instant::now();
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let mut body = json!({
            "sources": [source_for(&p.presented, self.lun_wait, remaining)],
            "options": {"read_only": rec.read_only},
        });
        if let Some(path) = &rec.path {
            body["target"] = json!(path);
        }
        let (agent, base) = self.connector_of(&host, remaining)?;
        let answer = connector_api::put_volume(&agent, &base, &rec.volume, &body, remaining);
        rec.timings.connector_ms = ms(t.elapsed());
        match answer {
            Ok(a) => {
                rec.manifest = a.get("manifest").cloned();
                rec.publication = a.get("publication").cloned().filter(|v| !v.is_null());
                rec.phase = MountPhase::Mounted;
                rec.host_state = Some(HostState {
                    state: HostVolumeState::Mounted,
                    reason: None,
                });
                rec.timings.total_ms = ms(t0.elapsed());
                self.store.put(Kind::Mount, &rec.volume, &rec)?;
                drop(reservation);
                tracing::info!(volume = %rec.volume, host = %rec.host, clone = %rec.clone, timings = ?rec.timings, "mounted through the host's connector");
                Ok((rec, Outcome::Created))
            }
            Err(e @ (CallError::TimedOut(_) | CallError::Broken(_))) => {
                let r = self.after_lost_answer(rec, &host, &base, &body, t0, e);
                drop(reservation);
                r
            }
            Err(e) => {
                let failure = self.undo_after_connector_failure(&rec, None, &base, e);
                drop(reservation);
                Err(Error::Connector(Box::new(failure)))
            }
        }
    }

    /// How long the appliance asks a connector what it did after losing its
    /// answer: a quarter of the mount deadline, at least 5 s, at most 60 s.
    fn settle_grace(&self) -> Duration {
        (self.mount_deadline / 4).clamp(SETTLE_GRACE_MIN, SETTLE_GRACE_MAX)
    }

    /// One look at the host: the connector's `GET /v1/volumes/{volume}`,
    /// as a [`HostState`] of this mount's clone, with the status it answered.
    fn host_view(&self, rec: &Mount, host: &Host) -> (HostState, Option<Value>) {
        let unknown = |why: String| HostState {
            state: HostVolumeState::Unknown,
            reason: Some(why),
        };
        let (agent, base) = match self.connector_of(host, callback::CALLBACK_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return (unknown(e.to_string()), None),
        };
        let status =
            match connector_api::get_volume(&agent, &base, &rec.volume, callback::CALLBACK_TIMEOUT)
            {
                Ok(Some(v)) => v,
                Ok(None) => {
                    return (
                        HostState {
                            state: HostVolumeState::Absent,
                            reason: Some(format!(
                                "the connector at {base} has no volume {:?} (never mounted, or \
                                 rolled back)",
                                rec.volume
                            )),
                        },
                        None,
                    )
                }
                Err(e) => {
                    return (
                        unknown(format!(
                            "the connector at {base} could not be asked about volume {:?}: {}",
                            rec.volume,
                            e.describe()
                        )),
                        None,
                    )
                }
            };
        // A volume of that name built from something else is not this mount.
        let ours = match (&rec.presentation, self.need_clone(&rec.clone)) {
            (Some(p), Ok(c)) => {
                callback::match_volumes(std::slice::from_ref(&status), &c, &p.presented)
            }
            _ => Ok(Usage::Released),
        };
        match ours {
            Ok(Usage::InUse(_)) => {}
            Ok(Usage::Released) => {
                return (
                    HostState {
                        state: HostVolumeState::Absent,
                        reason: Some(format!(
                            "volume {:?} on the host is not built from clone {:?}",
                            rec.volume, rec.clone
                        )),
                    },
                    None,
                )
            }
            Err(why) => return (unknown(why), None),
        }
        let state = match status.get("phase").and_then(Value::as_str) {
            Some("mounted") => HostVolumeState::Mounted,
            Some("mounting") => HostVolumeState::Mounting,
            Some("unmounting") => HostVolumeState::Unmounting,
            Some("quarantined") => HostVolumeState::Quarantined,
            other => {
                return (
                    unknown(format!(
                        "the connector at {base} reports volume {:?} in phase {other:?}",
                        rec.volume
                    )),
                    Some(status),
                )
            }
        };
        let reason = status
            .get("quarantine")
            .and_then(Value::as_str)
            .map(str::to_string);
        (HostState { state, reason }, Some(status))
    }

    /// Asks the host (see [`host_view`](Self::host_view)) until it has
    /// settled — mounted and published as asked, absent, or quarantined —
    /// or [`settle_grace`](Self::settle_grace) is over; the last view.
    fn settle_on_host(&self, rec: &Mount, host: &Host) -> (HostState, Option<Value>) {
        let until = Instant::now() + self.settle_grace();
        loop {
            let (s, v) = self.host_view(rec, host);
            let published = match &rec.path {
                None => true,
                Some(path) => v
                    .as_ref()
                    .and_then(|v| v.get("publications"))
                    .and_then(Value::as_array)
                    .is_some_and(|ps| {
                        ps.iter()
                            .any(|p| p.get("target").and_then(Value::as_str) == Some(path))
                    }),
            };
            let settled = match s.state {
                HostVolumeState::Mounted => published,
                HostVolumeState::Absent | HostVolumeState::Quarantined => true,
                _ => false,
            };
            if settled || Instant::now() >= until {
                return (s, v);
            }
            std::thread::sleep(SETTLE_POLL);
        }
    }

    /// The connector's answer to `PUT /v1/volumes/{volume}` was lost: asks
    /// the host what it did and keeps the mount (it finished), undoes the
    /// clone and presentation (it rolled back), or keeps the record as
    /// [`MountPhase::HostUnknown`] (it cannot tell).
    fn after_lost_answer(
        &self,
        mut rec: Mount,
        host: &Host,
        base: &str,
        body: &Value,
        t0: Instant,
        e: CallError,
    ) -> Result<(Mount, Outcome), Error> {
        tracing::warn!(volume = %rec.volume, host = %rec.host, error = %e.describe(), "the connector's answer was lost; asking it what it did");
        let (mut state, _) = self.settle_on_host(&rec, host);
        if state.state == HostVolumeState::Mounted {
            // The same PUT again answers the manifest and the publication
            // (and publishes, when a crash came between mount and publish).
            match self.put_again(&rec, host, body) {
                Ok(a) => {
                    rec.manifest = a.get("manifest").cloned();
                    rec.publication = a.get("publication").cloned().filter(|v| !v.is_null());
                    rec.phase = MountPhase::Mounted;
                    rec.host_state = Some(HostState {
                        state: HostVolumeState::Mounted,
                        reason: Some(format!(
                            "the connector's first answer was lost ({}); asked again, it \
                             reported the volume mounted from clone {:?}",
                            e.describe(),
                            rec.clone
                        )),
                    });
                    rec.timings.total_ms = ms(t0.elapsed());
                    self.store.put(Kind::Mount, &rec.volume, &rec)?;
                    tracing::info!(volume = %rec.volume, host = %rec.host, "the host had mounted the volume: kept");
                    return Ok((rec, Outcome::Created));
                }
                Err(again) => {
                    state = HostState {
                        state: HostVolumeState::Unknown,
                        reason: Some(format!(
                            "the host reported the volume mounted, but the same request again \
                             failed: {}",
                            again.describe()
                        )),
                    }
                }
            }
        }
        if state.state == HostVolumeState::Absent {
            let note = format!(
                "asked afterwards, the host reports no volume {:?} built from the clone (it \
                 rolled back)",
                rec.volume
            );
            let failure = self.undo_after_connector_failure(&rec, Some(&note), base, e);
            return Err(Error::Connector(Box::new(failure)));
        }
        // Mounting, unmounting, quarantined or unknown: nothing is undone on a guess.
        let why = match (&state.state, &state.reason) {
            (HostVolumeState::Unknown, Some(r)) => r.clone(),
            (s, r) => format!(
                "after {} s the host's connector still reports volume {:?} {s:?}{}",
                self.settle_grace().as_secs(),
                rec.volume,
                r.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            ),
        };
        rec.phase = MountPhase::HostUnknown;
        rec.host_state = Some(HostState {
            state: state.state,
            reason: Some(why.clone()),
        });
        rec.timings.total_ms = ms(t0.elapsed());
        self.store.put(Kind::Mount, &rec.volume, &rec)?;
        let left = vec![
            format!(
                "clone {:?} presented to host {:?} (the host may have mounted it)",
                rec.clone, rec.host
            ),
            format!(
                "the mount record of {:?} in phase host_unknown (the same POST again finishes \
                 the mount; DELETE /v1/mounts/{} takes it down once the host answers)",
                rec.volume, rec.volume
            ),
        ];
        let message = format!(
            "mounting volume {:?} (clone {:?} of gold copy {:?}) on host {:?}: the host's \
             connector at {base} did not answer — {}; whether the host mounted it is unknown: \
             {why}. Nothing was undone; left in place: {}",
            rec.volume,
            rec.clone,
            rec.gold,
            rec.host,
            e.describe(),
            left.join(", ")
        );
        tracing::warn!(volume = %rec.volume, %message, "host state unknown after a lost answer");
        Err(Error::Connector(Box::new(ConnectorFailure {
            code: match e {
                CallError::TimedOut(_) => ErrorCode::ConnectorTimeout,
                _ => ErrorCode::ConnectorFailed,
            },
            message,
            connector: None,
            undone: Vec::new(),
            left,
        })))
    }

    /// The same `PUT /v1/volumes/{volume}` again, asked a few times while
    /// the connector still finishes the first one (409 busy).
    fn put_again(&self, rec: &Mount, host: &Host, body: &Value) -> Result<Value, CallError> {
        let timeout = self.settle_grace();
        let until = Instant::now() + timeout;
        loop {
            let (agent, base) = self
                .connector_of(host, timeout)
                .map_err(|e| CallError::NotReached(e.to_string()))?;
            match connector_api::put_volume(&agent, &base, &rec.volume, body, timeout) {
                Err(CallError::Refused(a)) if a.status == 409 && Instant::now() < until => {
                    tracing::info!(volume = %rec.volume, "the connector is still busy with the volume; asking again");
                    std::thread::sleep(SETTLE_POLL);
                }
                r => return r,
            }
        }
    }

    /// Undoes the appliance's steps after the connector's PUT failed, as
    /// far as it is safe, and describes the failure.
    /// `host_note` says what the host reported after a lost answer.
    fn undo_after_connector_failure(
        &self,
        rec: &Mount,
        host_note: Option<&str>,
        base: &str,
        e: CallError,
    ) -> ConnectorFailure {
        let mut undone = Vec::new();
        let mut left = Vec::new();
        let unpresented = match &e {
            // The request never arrived: the host did nothing.
            CallError::NotReached(_) => self.unpresent(&rec.clone, true),
            // The connector answered (it rolls its own steps back), or after
            // a lost answer reported the volume absent. Unpresent only once
            // it confirms that no volume uses the clone.
            CallError::Refused(_) | CallError::TimedOut(_) | CallError::Broken(_) => {
                self.unpresent(&rec.clone, false)
            }
        };
        let mut all_undone = false;
        match unpresented {
            Ok(()) => {
                undone.push(format!(
                    "unpresented clone {:?} from host {:?}",
                    rec.clone, rec.host
                ));
                match self.delete_clone(&rec.clone) {
                    Ok(()) => {
                        undone.push(format!("deleted clone {:?}", rec.clone));
                        all_undone = true;
                    }
                    Err(d) => left.push(format!("clone {:?} (not deleted: {d})", rec.clone)),
                }
            }
            Err(u) => left.push(format!(
                "clone {:?} presented to host {:?} (not unpresented: {u})",
                rec.clone, rec.host
            )),
        }
        if all_undone {
            if let Err(s) = self.store.delete(Kind::Mount, &rec.volume) {
                left.push(format!("the mount record of {:?}: {s}", rec.volume));
            }
        } else {
            left.push(format!(
                "the mount record of {:?} (DELETE /v1/mounts/{} finishes the teardown once the \
                 host has released the clone)",
                rec.volume, rec.volume
            ));
        }
        let code = match &e {
            CallError::Refused(a) if a.status == 409 => ErrorCode::Conflict,
            CallError::TimedOut(_) => ErrorCode::ConnectorTimeout,
            _ => ErrorCode::ConnectorFailed,
        };
        let message = format!(
            "mounting volume {:?} (clone {:?} of gold copy {:?}) on host {:?}: the host's \
             connector at {base} failed — {}{}. The appliance undid: {}{}",
            rec.volume,
            rec.clone,
            rec.gold,
            rec.host,
            e.describe(),
            host_note.map(|n| format!("; {n}")).unwrap_or_default(),
            if undone.is_empty() {
                "nothing".to_string()
            } else {
                undone.join(", ")
            },
            if left.is_empty() {
                String::new()
            } else {
                format!("; left in place: {}", left.join(", "))
            }
        );
        tracing::warn!(volume = %rec.volume, %message, "mount failed at the connector");
        ConnectorFailure {
            code,
            message,
            connector: match e {
                CallError::Refused(a) => Some(a),
                _ => None,
            },
            undone,
            left,
        }
    }

    /// Takes a mount down: the connector unmounts the volume (`force`
    /// passed on), then the clone is unpresented and deleted. When the
    /// connector refuses (in use) or cannot be reached, nothing else is
    /// undone. A teardown that stopped half-way is finished by calling
    /// again.
    pub fn unmount(&self, volume: &str, force: bool) -> Result<Unmounted, Error> {
        validate_name("volume", volume)?;
        let (reservation, mut rec, host, before) = {
            let _g = self.guard();
            let reservation = self.reserve_mount(volume)?;
            let rec = self.need_mount(volume)?;
            let host = self.need_host(&rec.host)?;
            (reservation, rec.clone(), host, rec)
        };
        let (agent, base) = self.connector_of(&host, self.mount_deadline)?;
        rec.phase = MountPhase::Unmounting;
        self.store.put(Kind::Mount, volume, &rec)?;
        let report =
            match connector_api::delete_volume(&agent, &base, volume, force, self.mount_deadline) {
                Ok(r) => r,
                Err(e) => {
                    // Nothing was undone: the mount stands as it was.
                    self.store.put(Kind::Mount, volume, &before)?;
                    let code = match &e {
                        CallError::Refused(a) if a.status == 409 => ErrorCode::Conflict,
                        CallError::TimedOut(_) => ErrorCode::ConnectorTimeout,
                        _ => ErrorCode::ConnectorFailed,
                    };
                    return Err(Error::Connector(Box::new(ConnectorFailure {
                        code,
                        message: format!(
                            "unmounting volume {volume:?} on host {:?}: its connector at {base} \
                             did not unmount it — {}. Nothing was undone: the clone {:?} stays \
                             presented{}",
                            rec.host,
                            e.describe(),
                            rec.clone,
                            if force {
                                ""
                            } else {
                                " (?force=true asks the connector to force the unmount)"
                            }
                        ),
                        connector: match e {
                            CallError::Refused(a) => Some(a),
                            _ => None,
                        },
                        undone: Vec::new(),
                        left: Vec::new(),
                    })));
                }
            };
        match self.unpresent(&rec.clone, false) {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.delete_clone(&rec.clone) {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.store.delete(Kind::Mount, volume)?;
        drop(reservation);
        tracing::info!(volume, host = %rec.host, clone = %rec.clone, force, "unmounted through the host's connector");
        Ok(Unmounted {
            volume: volume.to_string(),
            connector: report,
            clone: rec.clone,
        })
    }

    /// Every mount, by volume name.
    pub fn list_mounts(&self) -> Result<Vec<Mount>, Error> {
        self.store.list(Kind::Mount)
    }

    /// One mount, with `host_state` asked of the host's connector now
    /// (mounted, mounting, unmounting, quarantined, absent, or unknown with
    /// why — one call, no retry).
    pub fn get_mount(&self, volume: &str) -> Result<Mount, Error> {
        validate_name("volume", volume)?;
        let mut m = self.need_mount(volume)?;
        let state = match self.need_host(&m.host) {
            Ok(h) => self.host_view(&m, &h).0,
            Err(e) => HostState {
                state: HostVolumeState::Unknown,
                reason: Some(e.to_string()),
            },
        };
        m.host_state = Some(state);
        Ok(m)
    }

    fn need_mount(&self, volume: &str) -> Result<Mount, Error> {
        self.store
            .get(Kind::Mount, volume)?
            .ok_or_else(|| Error::NotFound {
                what: "mount of volume",
                name: volume.to_string(),
            })
    }
}
