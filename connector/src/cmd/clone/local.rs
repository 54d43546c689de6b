//! The steps `goldmount clone` takes itself when goldmountd does not run:
//! create the clone, present it to this host, mount it through the engine
//! in-process (the presentation as source), publish it at `--path` — each
//! appliance step recorded first — and on a failure undo what was done,
//! newest first. `unclone` is the same way back.

use std::time::Instant;

use connector::engine::{DeviceSource, MountRequest, Multipath, UnmountOptions, VolumeName};
use serde_json::Value;

use super::record::{self, CloneRecord, Phase, Timings};
use super::{CloneAnswer, CloneError, Ctx, MountedBy, Request, UncloneAnswer, PUBLICATION_ID};

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The engine source for a presentation document.
fn source_of(p: &Value, req: &Request) -> Result<DeviceSource, CloneError> {
    Ok(DeviceSource::from_presentation_json(
        &p.to_string(),
        req.timeout,
        Multipath::Auto,
    )?)
}

/// True when `s` reads the LUN the presentation `p` describes (by the
/// clone's backing file for the loop backend, by WWN otherwise).
fn reads(s: &DeviceSource, p: &Value) -> bool {
    let wwn = p["wwn"].as_str().map(str::to_ascii_lowercase);
    match s {
        DeviceSource::LoopBacking { file, .. } => {
            p["backing_file"].as_str() == Some(&*file.to_string_lossy())
        }
        DeviceSource::Iscsi { presentation, .. } => {
            wwn == Some(presentation.wwn.to_ascii_lowercase())
        }
        DeviceSource::Fc { presentation, .. } => wwn == Some(presentation.wwn.to_ascii_lowercase()),
        DeviceSource::Wwid { wwid, .. } => wwn == Some(wwid.to_ascii_lowercase()),
        DeviceSource::Device { .. } => false,
    }
}

/// The volumes on this host that read the presented clone — what the
/// appliance would ask goldmountd before an unpresent.
fn users(ctx: &Ctx, p: &Value) -> Result<Vec<String>, CloneError> {
    Ok(ctx
        .engine
        .list()?
        .into_iter()
        .filter(|v| v.sources.iter().any(|s| reads(s, p)))
        .map(|v| v.volume)
        .collect())
}

/// The answer for a record whose volume is up, or `None` when the host
/// side is not (what it was) any more.
fn answer(ctx: &Ctx, rec: &CloneRecord, created: bool) -> Result<Option<CloneAnswer>, CloneError> {
    let Ok(volume) = VolumeName::parse(&rec.volume) else {
        return Ok(None);
    };
    let Ok(st) = ctx.engine.get(&volume) else {
        return Ok(None);
    };
    let Some(manifest) = st.manifest.clone() else {
        return Ok(None);
    };
    let publication = st.publications.iter().find(|p| p.id == PUBLICATION_ID);
    let path = match (&rec.path, publication) {
        (None, _) => manifest.path.clone(),
        (Some(want), Some(p)) if &p.target == want => want.clone(),
        (Some(_), _) => return Ok(None),
    };
    Ok(Some(CloneAnswer {
        volume: rec.volume.clone(),
        gold: rec.gold.clone(),
        host: rec.host.clone(),
        clone: rec.clone.clone(),
        mounted_by: MountedBy::Goldmount,
        read_only: rec.read_only,
        profile: rec.profile.clone(),
        class: rec.settings.class.clone(),
        path,
        presentation: rec.presentation.clone().unwrap_or(Value::Null),
        manifest: enc(&manifest),
        publication: publication.map(enc),
        timings: rec.timings,
        created,
    }))
}

/// JSON of an engine type for the answer.
fn enc<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Clones, presents, mounts and publishes; resumes a record of the same
/// request (`existing`), answering at once when it is all up.
pub fn clone(
    ctx: &Ctx,
    req: &Request,
    host: &str,
    existing: Option<CloneRecord>,
) -> Result<CloneAnswer, CloneError> {
    if let Some(rec) = existing.as_ref().filter(|r| r.phase == Phase::Mounted) {
        if let Some(a) = answer(ctx, rec, false)? {
            return Ok(a);
        }
        tracing::warn!(volume = %rec.volume, "the clone's volume is not up on this host any more: taking the steps again");
    }
    let fresh = existing.is_none();
    let mut rec = match existing {
        Some(r) => r,
        None => CloneRecord {
            appliance: ctx.app.url().to_string(),
            volume: req.volume.to_string(),
            gold: req.gold.clone(),
            host: host.to_string(),
            clone: ctx.app.free_clone_name(req.volume.as_str())?,
            path: req.path.clone(),
            read_only: req.read_only,
            profile: req.profile.clone(),
            settings: req.settings.clone(),
            presentation: None,
            phase: Phase::Creating,
            left: Vec::new(),
            timings: Timings::default(),
        },
    };
    rec.phase = Phase::Creating;
    rec.left.clear();
    record::save(&ctx.engine, &rec)?;
    let t0 = Instant::now();

    // 1. The clone. A fresh run that finds it existing did not make it.
    let made = match ctx
        .app
        .create_clone(&rec.clone, &rec.gold, rec.settings.class.as_deref())
    {
        Ok(m) => m,
        Err(e) => return Err(undo(ctx, &mut rec, e)),
    };
    if fresh && !made.created {
        record::remove(&ctx.engine, &rec.volume)?;
        return Err(CloneError::Conflict {
            message: format!(
                "clone {} was created on the appliance by someone else while this command started; it was left alone and nothing was changed",
                rec.clone
            ),
            hint: "try again (another clone name is chosen)".into(),
        });
    }
    let mut timings = Timings {
        clone_ms: ms(t0),
        ..Timings::default()
    };
    match steps(ctx, req, &mut rec, &mut timings) {
        Ok(()) => {
            timings.total_ms = ms(t0);
            rec.timings = timings;
            rec.phase = Phase::Mounted;
            record::save(&ctx.engine, &rec)?;
            answer(ctx, &rec, true)?.ok_or_else(|| {
                CloneError::Setup(format!(
                    "volume {} was mounted but its record is gone: another process took it down",
                    rec.volume
                ))
            })
        }
        Err(e) => Err(undo(ctx, &mut rec, e)),
    }
}

/// Present, mount, publish.
fn steps(
    ctx: &Ctx,
    req: &Request,
    rec: &mut CloneRecord,
    timings: &mut Timings,
) -> Result<(), CloneError> {
    let t = Instant::now();
    let p = ctx.app.present(&rec.clone, &rec.host)?;
    rec.presentation = Some(p.clone());
    record::save(&ctx.engine, rec)?;
    timings.present_ms = ms(t);

    let t = Instant::now();
    let mount = MountRequest {
        volume: req.volume.clone(),
        sources: vec![source_of(&p, req)?],
        options: rec.settings.mount_options(req.read_only),
    };
    ctx.engine.mount(&mount)?;
    if let Some(target) = &req.path {
        let up = ctx
            .engine
            .get(&req.volume)?
            .publications
            .into_iter()
            .any(|x| x.id == PUBLICATION_ID && &x.target == target && x.read_only == req.read_only);
        if !up {
            ctx.engine
                .publish(&req.volume, PUBLICATION_ID, target, req.read_only)?;
        }
    }
    timings.mount_ms = ms(t);
    Ok(())
}

/// Undoes what the record names, newest first — the host's volume (if it
/// reads this clone), the presentation (once no volume here reads it), the
/// clone — and wraps the original error with what was undone and left.
fn undo(ctx: &Ctx, rec: &mut CloneRecord, err: CloneError) -> CloneError {
    let mut undone = Vec::new();
    let mut left = Vec::new();
    let host_clear = match take_down_host(ctx, rec, false, &mut undone) {
        Ok(_) => true,
        Err(e) => {
            left.push(format!("volume {} on this host ({e})", rec.volume));
            false
        }
    };
    if host_clear {
        if let Err(e) = take_down_appliance(ctx, rec, &mut undone) {
            left.push(e.to_string());
        }
    } else {
        left.push(format!(
            "clone {} presented to host {}",
            rec.clone, rec.host
        ));
    }
    let kept = if left.is_empty() {
        record::remove(&ctx.engine, &rec.volume)
    } else {
        rec.phase = Phase::Failed;
        rec.left = left.clone();
        record::save(&ctx.engine, rec)
    };
    if let Err(e) = kept {
        left.push(e.to_string());
    }
    CloneError::Failed {
        source: Box::new(err),
        volume: rec.volume.clone(),
        undone,
        left,
    }
}

/// Takes the volume down on this host when it reads this record's clone:
/// our publication first (refused while in use unless `force`), then the
/// engine's teardown. Answers the engine's report, if it ran.
fn take_down_host(
    ctx: &Ctx,
    rec: &CloneRecord,
    force: bool,
    undone: &mut Vec<String>,
) -> Result<Option<connector::engine::UnmountReport>, CloneError> {
    let volume = VolumeName::parse(&rec.volume)?;
    let Ok(st) = ctx.engine.get(&volume) else {
        return Ok(None);
    };
    let ours = rec
        .presentation
        .as_ref()
        .is_some_and(|p| st.sources.iter().any(|s| reads(s, p)));
    if !ours {
        return Err(CloneError::Conflict {
            message: format!(
                "volume {} on this host does not read clone {}; it was left alone",
                rec.volume, rec.clone
            ),
            hint: format!("goldmount unmount --volume {} takes it down", rec.volume),
        });
    }
    if !force {
        if let Some(p) = st.publications.iter().find(|p| p.id == PUBLICATION_ID) {
            for _ in 0..p.refs.max(1) {
                if ctx
                    .engine
                    .unpublish(&volume, PUBLICATION_ID, false)?
                    .into_inner()
                    == 0
                {
                    break;
                }
            }
            undone.push(format!(
                "took down the publication at {}",
                p.target.display()
            ));
        }
    }
    let r = ctx.engine.unmount_with(
        &volume,
        &UnmountOptions {
            force,
            deadline: None,
        },
    )?;
    undone.extend(r.undone.iter().cloned());
    undone.extend(
        r.forced
            .iter()
            .map(|f| format!("FORCED: {f} was busy and was detached lazily")),
    );
    undone.push(format!("unmounted volume {}", rec.volume));
    Ok(Some(r))
}

/// Unpresents the clone (after checking that no volume here reads it) and
/// deletes it.
fn take_down_appliance(
    ctx: &Ctx,
    rec: &CloneRecord,
    undone: &mut Vec<String>,
) -> Result<(), CloneError> {
    if let Some(p) = &rec.presentation {
        let users = users(ctx, p)?;
        if !users.is_empty() {
            return Err(CloneError::Conflict {
                message: format!(
                    "clone {} stays presented: volume(s) {} on this host read it",
                    rec.clone,
                    users.join(", ")
                ),
                hint: "unmount them first".into(),
            });
        }
    }
    if ctx.app.unpresent(&rec.clone)? {
        undone.push(format!(
            "unpresented clone {} from host {}",
            rec.clone, rec.host
        ));
    }
    if ctx.app.delete_clone(&rec.clone)? {
        undone.push(format!("deleted clone {}", rec.clone));
    }
    Ok(())
}

/// The way back for a volume this command mounted in-process: the host's
/// teardown (refused while in use unless `force`), then unpresent, then
/// delete the clone, then forget the record.
pub fn unclone(
    ctx: &Ctx,
    volume: &VolumeName,
    mut rec: CloneRecord,
    force: bool,
) -> Result<UncloneAnswer, CloneError> {
    let mut undone = Vec::new();
    let report = take_down_host(ctx, &rec, force, &mut undone)?;
    if let Err(e) = take_down_appliance(ctx, &rec, &mut undone) {
        rec.phase = Phase::Failed;
        rec.left = vec![format!("clone {} on the appliance", rec.clone)];
        let left = rec.left.clone();
        record::save(&ctx.engine, &rec)?;
        return Err(CloneError::Failed {
            source: Box::new(e),
            volume: volume.to_string(),
            undone,
            left,
        });
    }
    record::remove(&ctx.engine, volume.as_str())?;
    Ok(UncloneAnswer {
        volume: volume.to_string(),
        not_cloned: false,
        mounted_by: Some(MountedBy::Goldmount),
        clone: Some(rec.clone.clone()),
        data_loss: report
            .as_ref()
            .map(|r| r.data_loss.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        report: report
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .unwrap_or(Value::Null),
        undone,
    })
}
