//! `goldmount status`: this host at a glance — its identity, whether the
//! appliance knows it (asked read-only), its volumes and the operations in
//! flight (volumes whose lock another process holds right now).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use connector::engine::Engine;
use registration::HostIdentity;
use serde::Serialize;

/// Arguments of `goldmount status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Status {
    identity: HostIdentity,
    registration: Registration,
    volumes: Vec<Volume>,
    in_flight: Vec<String>,
}

#[derive(Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Registration {
    /// No `[appliance]` in the config.
    NotConfigured,
    /// The appliance has this host (found by one of its ports).
    Registered {
        appliance: String,
        host: String,
        callback_url: Option<String>,
    },
    /// The appliance answered but does not know any of this host's ports.
    Unknown { appliance: String },
    /// The appliance could not be asked.
    Error { message: String },
}

#[derive(Serialize)]
struct Volume {
    volume: String,
    phase: String,
    mounts: usize,
    publications: usize,
    quarantine: Option<String>,
}

fn registration(config: Option<&Path>, id: &HostIdentity) -> Registration {
    let client = match super::register::configured_client(config) {
        Ok(Some(c)) => c,
        Ok(None) => return Registration::NotConfigured,
        Err(message) => return Registration::Error { message },
    };
    let appliance = client.url().to_string();
    let lookups = id
        .iqns
        .iter()
        .map(|i| client.find_by_iqn(i))
        .chain(id.wwpns.iter().map(|w| client.find_by_wwpn(w)));
    for found in lookups {
        match found {
            Ok(hosts) => {
                if let Some(h) = hosts.into_iter().next() {
                    return Registration::Registered {
                        appliance,
                        host: h.name,
                        callback_url: h.callback_url,
                    };
                }
            }
            Err(e) => {
                return Registration::Error {
                    message: e.to_string(),
                }
            }
        }
    }
    Registration::Unknown { appliance }
}

/// Lock files under `lock_dir` that some process holds now, read from
/// /proc/locks (taking a lock to test it would make a concurrent command
/// fail as busy).
fn held_locks(lock_dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF" → (dev, inode).
    let held: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let id = f.iter().find(|x| x.matches(':').count() == 2)?;
            let mut it = id.split(':');
            let maj = u64::from_str_radix(it.next()?, 16).ok()?;
            let min = u64::from_str_radix(it.next()?, 16).ok()?;
            let ino = it.next()?.parse::<u64>().ok()?;
            Some((rustix::fs::makedev(maj as u32, min as u32), ino))
        })
        .collect();
    let Ok(dir) = std::fs::read_dir(lock_dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let vol = name.strip_suffix(".lock")?.to_string();
            let md = e.metadata().ok()?;
            held.contains(&(md.dev(), md.ino())).then_some(vol)
        })
        .collect();
    out.sort();
    out
}

/// Runs `goldmount status`.
pub fn run(engine: &Engine, args: &StatusArgs, config: Option<&Path>) -> Result<()> {
    let identity = HostIdentity::collect();
    let registration = registration(config, &identity);
    let volumes = engine
        .list()?
        .into_iter()
        .map(|v| Volume {
            phase: format!("{:?}", v.phase).to_lowercase(),
            mounts: v.manifest.as_ref().map_or(0, |m| m.mounts.len()),
            publications: v.publications.len(),
            quarantine: v.quarantine,
            volume: v.volume,
        })
        .collect();
    let status = Status {
        identity,
        registration,
        volumes,
        in_flight: held_locks(&engine.config().lock_dir()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let id = &status.identity;
    println!("host {} ({})", id.hostname, id.os);
    for i in &id.iqns {
        println!("  iSCSI initiator {i}");
    }
    for w in &id.wwpns {
        println!("  FC port {w}");
    }
    match &status.registration {
        Registration::NotConfigured => {
            println!("appliance: not configured ([appliance] in the config)")
        }
        Registration::Registered {
            appliance,
            host,
            callback_url,
        } => println!(
            "appliance {appliance}: registered as {host}{}",
            callback_url
                .as_deref()
                .map(|c| format!(", calls back {c}"))
                .unwrap_or_else(|| ", no callback (it cannot reach goldmountd)".into())
        ),
        Registration::Unknown { appliance } => {
            println!("appliance {appliance}: does not know this host (goldmount register)")
        }
        Registration::Error { message } => println!("appliance: cannot ask: {message}"),
    }
    if status.volumes.is_empty() {
        println!("no volumes");
    }
    for v in &status.volumes {
        println!(
            "volume {:<24} {:<11} {} mounts, {} publications{}",
            v.volume,
            v.phase,
            v.mounts,
            v.publications,
            v.quarantine
                .as_deref()
                .map(|q| format!(" — quarantined: {q}"))
                .unwrap_or_default()
        );
    }
    for v in &status.in_flight {
        println!("in flight: volume {v} is being changed by a goldmount process now");
    }
    Ok(())
}
