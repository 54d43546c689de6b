//! `goldmount-executor`: the host side's tiny, synchronous helper. A thin
//! layer over the `executor` library: parse arguments, call, print text or
//! JSON, map errors to documented exit codes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use executor::rescan::ScanTarget;
use executor::wait::{MultipathPolicy, WaitSpec};
use executor::{Error, Hctl, Root};
use lexopt::prelude::*;

mod log;

const HELP: &str = "\
goldmount-executor: host identity, block devices, targeted SCSI rescans,
verified wait-for-device and device removal (sysfs-based, synchronous)

USAGE:
  goldmount-executor [GLOBAL] instance-id
  goldmount-executor [GLOBAL] local-devices [--all]
  goldmount-executor [GLOBAL] rescan --host H --channel C --target T --lun L
  goldmount-executor [GLOBAL] rescan --iscsi-session ID --lun L
  goldmount-executor [GLOBAL] rescan --fc-target WWPN --lun L
  goldmount-executor [GLOBAL] rescan --wildcard [--host H]
  goldmount-executor [GLOBAL] rescan --lip [--host H]
  goldmount-executor [GLOBAL] wait-for-device --wwid ID [--serial S] [--timeout D]
        [--hctl H:C:T:L | --iscsi-session ID --lun L | --fc-target WWPN --lun L]
        [--multipath auto|require|never]
  goldmount-executor [GLOBAL] remove-device DEV [--force]

SUBCOMMANDS:
  instance-id      hostname, machine-id, OS, kernel, arch, IPs, iSCSI IQN,
                   FC ports (online ones are registered), NVMe host NQN/ID
  local-devices    block devices from sysfs: size, sectors, SCSI identity
                   (WWID, VPD 0x80 serial), H:C:T:L, transport and path,
                   holders, partitions, mountpoints (--all: idle loops too)
  rescan           scan exactly one LUN; '- - -' only with --wildcard; an FC
                   LIP only with --lip. --dry-run prints what would be written
  wait-for-device  wait for the disk with that WWID (naa.…, 36…, 0x…, eui.…)
                   and serial, verified from its VPD pages; with a place
                   (--hctl/--iscsi-session/--fc-target + --lun) a stale device
                   there is deleted and rescanned once before failing. Prints
                   the node: the multipath map when multipathd runs and the
                   LUN has several paths (up, listed in /etc/multipath/wwids,
                   or several iSCSI sessions to its target); with no map 2 s
                   on, lists the WWID (multipath -a) and adds the paths to
                   multipathd (find_multipaths strict maps only listed WWIDs).
                   --timeout: 30s default; 500ms, 2m, or plain seconds
  remove-device    flush, remove the multipath map holding DEV (and its WWID
                   from /etc/multipath/wwids), delete every SCSI path;
                   refuses when mounted or held unless --force. Paths
                   that are offline/transport-offline are not flushed but
                   deleted; with no path up it says unsynced data was lost
                   --dry-run shows the stack and what holds it

GLOBAL OPTIONS:
  --json           machine-readable output (errors too: {\"error\":…} on stdout)
  --root DIR       read /sys, /proc, /etc, /dev under DIR (captured trees)
  -v, --verbose    log to stderr (-vv: debug)
  -h, --help       this help

EXIT CODES:
  0  success
  1  system error (sysfs I/O, an external command failed or timed out)
  2  usage error or invalid argument (including a wildcard without --wildcard)
  3  not found (device, SCSI host, iSCSI session, FC remote port)
  4  timed out waiting for the device
  5  identity mismatch (WWID/serial differ, even after delete + rescan)
  6  refused: device mounted or held, or multipath map still in use
";

/// Parsed command line.
struct Cli {
    json: bool,
    root: Root,
    verbose: u8,
    cmd: Cmd,
}

enum Cmd {
    Help,
    InstanceId,
    LocalDevices {
        all: bool,
    },
    Rescan {
        target: RescanWhat,
        dry_run: bool,
    },
    Wait(WaitSpec),
    Remove {
        dev: String,
        force: bool,
        dry_run: bool,
    },
}

enum RescanWhat {
    Scan(ScanTarget),
    Lip(Option<u32>),
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn lex(e: lexopt::Error) -> Error {
    usage(e.to_string())
}

/// A number for `--flag`; "-" is the wildcard and needs --wildcard.
fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, Error> {
    if v == "-" {
        return Err(usage(format!(
            "{flag} -: '-' is a wildcard; a wildcard scan needs --wildcard (and scans every LUN of the host)"
        )));
    }
    v.parse()
        .map_err(|_| usage(format!("{flag} {v}: not a number")))
}

/// Durations: "30", "30s", "500ms", "2m".
fn duration(v: &str) -> Result<Duration, Error> {
    let bad = || usage(format!("--timeout {v}: expected e.g. 30, 30s, 500ms or 2m"));
    let (num, mult) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        (v, 1.0)
    };
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(f * mult))
}

fn value(p: &mut lexopt::Parser) -> Result<String, Error> {
    p.value()
        .map_err(lex)?
        .into_string()
        .map_err(|_| usage("argument is not UTF-8"))
}

fn parse(args: Vec<String>) -> Result<Cli, Error> {
    let mut p = lexopt::Parser::from_args(args);
    let mut json = false;
    let mut root = Root::host();
    let mut verbose = 0u8;
    let mut sub: Option<String> = None;
    // Subcommand options, collected then validated per subcommand.
    let mut host = None;
    let mut channel = None;
    let mut target = None;
    let mut lun = None;
    let mut session = None;
    let mut fc_target = None;
    let mut wildcard = false;
    let mut lip = false;
    let mut dry_run = false;
    let mut all = false;
    let mut wwid = None;
    let mut serial = None;
    let mut timeout = Duration::from_secs(30);
    let mut hctl: Option<Hctl> = None;
    let mut multipath = MultipathPolicy::Auto;
    let mut force = false;
    let mut positional: Vec<String> = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    while let Some(arg) = p.next().map_err(lex)? {
        let flag: &'static str = match arg {
            Short('h') | Long("help") => {
                return Ok(Cli {
                    json,
                    root,
                    verbose,
                    cmd: Cmd::Help,
                })
            }
            Long("json") => {
                json = true;
                continue;
            }
            Short('v') | Long("verbose") => {
                verbose = verbose.saturating_add(1);
                continue;
            }
            Long("root") => {
                root = Root::at(value(&mut p)?);
                continue;
            }
            Long("host") => "--host",
            Long("channel") => "--channel",
            Long("target") => "--target",
            Long("lun") => "--lun",
            Long("iscsi-session") => "--iscsi-session",
            Long("fc-target") => "--fc-target",
            Long("wildcard") => "--wildcard",
            Long("lip") => "--lip",
            Long("dry-run") => "--dry-run",
            Long("all") => "--all",
            Long("wwid") => "--wwid",
            Long("serial") => "--serial",
            Long("timeout") => "--timeout",
            Long("hctl") => "--hctl",
            Long("multipath") => "--multipath",
            Long("force") => "--force",
            Value(v) => {
                let v = v
                    .into_string()
                    .map_err(|_| usage("argument is not UTF-8"))?;
                if sub.is_none() {
                    sub = Some(v);
                } else {
                    positional.push(v);
                }
                continue;
            }
            other => return Err(lex(other.unexpected())),
        };
        if seen.contains(&flag) {
            return Err(usage(format!("{flag} given twice")));
        }
        seen.push(flag);
        match flag {
            "--host" => host = Some(number::<u32>(flag, &value(&mut p)?)?),
            "--channel" => channel = Some(number::<u32>(flag, &value(&mut p)?)?),
            "--target" => target = Some(number::<u32>(flag, &value(&mut p)?)?),
            "--lun" => lun = Some(number::<u64>(flag, &value(&mut p)?)?),
            "--iscsi-session" => session = Some(number::<u32>(flag, &value(&mut p)?)?),
            "--fc-target" => fc_target = Some(value(&mut p)?),
            "--wildcard" => wildcard = true,
            "--lip" => lip = true,
            "--dry-run" => dry_run = true,
            "--all" => all = true,
            "--wwid" => wwid = Some(value(&mut p)?),
            "--serial" => serial = Some(value(&mut p)?),
            "--timeout" => timeout = duration(&value(&mut p)?)?,
            "--hctl" => hctl = Some(value(&mut p)?.parse().map_err(usage)?),
            "--multipath" => {
                multipath = match value(&mut p)?.as_str() {
                    "auto" => MultipathPolicy::Auto,
                    "require" => MultipathPolicy::Require,
                    "never" => MultipathPolicy::Never,
                    o => {
                        return Err(usage(format!(
                            "--multipath {o}: expected auto, require or never"
                        )))
                    }
                }
            }
            "--force" => force = true,
            _ => {}
        }
    }
    let Some(sub) = sub else {
        return Err(usage("no subcommand; see --help"));
    };
    let allowed: &[&str] = match sub.as_str() {
        "instance-id" => &[],
        "local-devices" => &["--all"],
        "rescan" => &[
            "--host",
            "--channel",
            "--target",
            "--lun",
            "--iscsi-session",
            "--fc-target",
            "--wildcard",
            "--lip",
            "--dry-run",
        ],
        "wait-for-device" => &[
            "--wwid",
            "--serial",
            "--timeout",
            "--hctl",
            "--iscsi-session",
            "--fc-target",
            "--lun",
            "--multipath",
        ],
        "remove-device" => &["--force", "--dry-run"],
        o => return Err(usage(format!("unknown subcommand {o:?}; see --help"))),
    };
    if let Some(f) = seen.iter().find(|f| !allowed.contains(f)) {
        return Err(usage(format!("{sub} does not take {f}")));
    }
    if sub != "remove-device" {
        if let Some(extra) = positional.first() {
            return Err(usage(format!("{sub}: unexpected argument {extra:?}")));
        }
    }
    let need_lun = |what: &str| lun.ok_or_else(|| usage(format!("{what} needs --lun L")));
    let cmd = match sub.as_str() {
        "instance-id" => Cmd::InstanceId,
        "local-devices" => Cmd::LocalDevices { all },
        "rescan" => {
            let kinds = [
                host.is_some() && !wildcard && !lip || channel.is_some() || target.is_some(),
                session.is_some(),
                fc_target.is_some(),
                wildcard,
                lip,
            ];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return Err(usage(
                    "rescan: give exactly one of --host/--channel/--target/--lun, --iscsi-session, --fc-target, --wildcard, --lip",
                ));
            }
            let target = if wildcard {
                if lun.is_some() {
                    return Err(usage(
                        "rescan --wildcard scans every LUN; it takes only --host",
                    ));
                }
                RescanWhat::Scan(ScanTarget::Wildcard { host })
            } else if lip {
                if lun.is_some() {
                    return Err(usage("rescan --lip takes only --host"));
                }
                RescanWhat::Lip(host)
            } else if let Some(session) = session {
                RescanWhat::Scan(ScanTarget::IscsiSession {
                    session,
                    lun: need_lun("--iscsi-session")?,
                })
            } else if let Some(wwpn) = fc_target {
                RescanWhat::Scan(ScanTarget::FcTarget {
                    wwpn,
                    lun: need_lun("--fc-target")?,
                })
            } else {
                match (host, channel, target, lun) {
                    (Some(host), Some(channel), Some(target), Some(lun)) => {
                        RescanWhat::Scan(ScanTarget::Hctl(Hctl { host, channel, target, lun }))
                    }
                    (None, None, None, None) => {
                        return Err(usage(
                            "rescan needs a target: --host H --channel C --target T --lun L, --iscsi-session ID --lun L, --fc-target WWPN --lun L (or --wildcard / --lip)",
                        ))
                    }
                    _ => {
                        return Err(usage(
                            "rescan --host/--channel/--target/--lun: all four are needed; scanning a whole host or target is --wildcard",
                        ))
                    }
                }
            };
            Cmd::Rescan { target, dry_run }
        }
        "wait-for-device" => {
            let wwid = wwid.ok_or_else(|| usage("wait-for-device needs --wwid ID"))?;
            if wwid.trim().is_empty() {
                return Err(usage("--wwid is empty"));
            }
            let places = [hctl.is_some(), session.is_some(), fc_target.is_some()];
            if places.iter().filter(|k| **k).count() > 1 {
                return Err(usage(
                    "wait-for-device: give at most one of --hctl, --iscsi-session, --fc-target",
                ));
            }
            let location = if let Some(h) = hctl {
                if lun.is_some() {
                    return Err(usage("--hctl already contains the LUN"));
                }
                Some(ScanTarget::Hctl(h))
            } else if let Some(session) = session {
                Some(ScanTarget::IscsiSession {
                    session,
                    lun: need_lun("--iscsi-session")?,
                })
            } else if let Some(wwpn) = fc_target {
                Some(ScanTarget::FcTarget {
                    wwpn,
                    lun: need_lun("--fc-target")?,
                })
            } else if lun.is_some() {
                return Err(usage("--lun needs --iscsi-session or --fc-target"));
            } else {
                None
            };
            Cmd::Wait(WaitSpec {
                wwid,
                serial,
                location,
                timeout,
                multipath,
            })
        }
        "remove-device" => {
            let mut it = positional.into_iter();
            let dev = it
                .next()
                .ok_or_else(|| usage("remove-device needs a device, e.g. /dev/sdc"))?;
            if let Some(extra) = it.next() {
                return Err(usage(format!(
                    "remove-device takes one device; unexpected {extra:?}"
                )));
            }
            Cmd::Remove {
                dev,
                force,
                dry_run,
            }
        }
        o => return Err(usage(format!("unknown subcommand {o:?}; see --help"))),
    };
    Ok(Cli {
        json,
        root,
        verbose,
        cmd,
    })
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("encoding JSON")?
    );
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Help => print!("{HELP}"),
        Cmd::InstanceId => {
            let id = executor::identity::collect(root);
            if cli.json {
                return print_json(&id);
            }
            println!("hostname: {}", id.hostname);
            println!("machine_id: {}", id.machine_id);
            println!(
                "os: {} ({} {})",
                id.os.pretty_name, id.os.id, id.os.version_id
            );
            println!("kernel: {}", id.kernel);
            println!("arch: {}", id.arch);
            println!("ips: {}", id.ips.join(" "));
            println!("iscsi.initiator_iqn: {}", id.iscsi.initiator_iqn);
            if !id.iscsi.consistent {
                println!(
                    "iscsi.warning: sessions use {} (iscsid not restarted after a name change?)",
                    id.iscsi.session_initiator_names.join(", ")
                );
            }
            for p in &id.fc.ports {
                println!(
                    "fc.port: host{} wwpn={} wwnn={} state={} speed={} fabric={}{}",
                    p.host,
                    p.wwpn,
                    p.wwnn,
                    p.port_state,
                    p.speed,
                    p.fabric_name,
                    if p.online { " [registered]" } else { "" }
                );
            }
            println!("nvme.hostnqn: {}", id.nvme.hostnqn);
            println!("nvme.hostid: {}", id.nvme.hostid);
        }
        Cmd::LocalDevices { all } => {
            let devs = executor::inventory::list(root, *all);
            if cli.json {
                return print_json(&devs);
            }
            println!(
                "{:<10} {:<8} {:>14} {:<10} {:<10} {:<38} {:<24} MOUNTS/HOLDERS",
                "NAME", "MAJ:MIN", "SIZE", "TRANSPORT", "HCTL", "WWID", "SERIAL"
            );
            for d in &devs {
                let mut extra: Vec<String> = d.mountpoints.clone();
                extra.extend(
                    d.holders
                        .iter()
                        .map(|h| format!("<-{}", h.dm_name.clone().unwrap_or(h.name.clone()))),
                );
                if let Some(l) = &d.loop_backing {
                    extra.push(format!("backing={}", l.file));
                }
                println!(
                    "{:<10} {:<8} {:>14} {:<10} {:<10} {:<38} {:<24} {}",
                    d.name,
                    d.dev,
                    d.size,
                    d.transport,
                    d.hctl.map(|h| h.to_string()).unwrap_or_default(),
                    d.wwid.clone().unwrap_or_default(),
                    d.serial.clone().unwrap_or_default(),
                    extra.join(" ")
                );
                for p in &d.partitions {
                    println!(
                        "  {:<8} {:<8} {:>14} {}",
                        p.name,
                        p.dev,
                        p.size,
                        p.mountpoints.join(" ")
                    );
                }
            }
        }
        Cmd::Rescan {
            target: RescanWhat::Lip(host),
            ..
        } => {
            let hosts = executor::rescan::lip(root, *host).context("issuing a LIP")?;
            if cli.json {
                return print_json(&serde_json::json!({ "lip_hosts": hosts }));
            }
            for h in hosts {
                println!("LIP issued on host{h}");
            }
        }
        Cmd::Rescan {
            target: RescanWhat::Scan(t),
            dry_run,
        } => {
            let writes = if *dry_run {
                executor::rescan::plan(root, t)
            } else {
                executor::rescan::scan(root, t)
            }
            .context("rescan")?;
            if cli.json {
                return print_json(&serde_json::json!({ "dry_run": dry_run, "scans": writes }));
            }
            for w in writes {
                println!(
                    "{}host{} scan \"{}\"",
                    if *dry_run { "would write: " } else { "" },
                    w.host,
                    w.line
                );
            }
        }
        Cmd::Wait(spec) => {
            let found = executor::wait::wait(root, spec).context("wait-for-device")?;
            if cli.json {
                return print_json(&found);
            }
            println!("{}", found.node);
        }
        Cmd::Remove {
            dev,
            force,
            dry_run,
        } => {
            if *dry_run {
                let stack = executor::remove::plan(root, dev).context("remove-device")?;
                return if cli.json {
                    print_json(&stack)
                } else {
                    println!("device: {}", stack.device);
                    if let Some((dm, name)) = &stack.map {
                        println!("multipath map: {dm} ({name})");
                    }
                    println!("paths: {}", stack.paths.join(" "));
                    let states: Vec<_> = stack
                        .paths
                        .iter()
                        .map(|p| executor::remove::path_state(root, p))
                        .collect();
                    for p in &states {
                        println!("path {}: {}", p.device, p.scsi_state);
                    }
                    let tp = executor::remove::plan_teardown(&stack, &states);
                    println!("would flush: {}", tp.flush.as_deref().unwrap_or("nothing"));
                    for s in &tp.skipped {
                        println!("would not flush {}: {}", s.device, s.reason);
                    }
                    println!(
                        "in use: {}",
                        if stack.in_use.is_empty() {
                            "no".into()
                        } else {
                            stack.in_use.join(", ")
                        }
                    );
                    Ok(())
                };
            }
            let opts = executor::remove::RemoveOptions {
                force: *force,
                ..Default::default()
            };
            let r = executor::remove::remove(root, dev, &opts).context("remove-device")?;
            if cli.json {
                return print_json(&r);
            }
            if let Some(u) = &r.unsynced {
                eprintln!("goldmount-executor: WARNING: {u}");
                println!("WARNING: {u}");
            }
            for p in &r.path_states {
                let session = p
                    .session_state
                    .as_deref()
                    .map(|s| format!(" (iSCSI session {s})"))
                    .unwrap_or_default();
                println!("path {}: {}{session}", p.device, p.scsi_state);
            }
            if !r.flushed.is_empty() {
                println!("flushed {}", r.flushed.join(" "));
            }
            for s in &r.skipped {
                println!("not flushed {}: {}", s.device, s.reason);
            }
            if let Some(m) = &r.map_removed {
                println!("removed multipath map {m}");
            }
            println!("deleted {}", r.deleted.join(" "));
            if !r.delete_unfinished.is_empty() {
                println!(
                    "WARNING: still deleting (stuck) {}",
                    r.delete_unfinished.join(" ")
                );
            }
            for w in &r.warnings {
                println!("warning: {w}");
            }
        }
    }
    Ok(())
}

fn init_logging(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let level = if verbose > 1 {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    log::StderrLogger::install(level);
}

fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<Error>())
        .map_or(1, Error::exit_code)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_requested = args.iter().any(|a| a == "--json");
    let result = parse(args).map_err(anyhow::Error::from).and_then(|cli| {
        init_logging(cli.verbose);
        run(&cli)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = exit_code(&e);
            let msg = format!("{e:#}");
            eprintln!("goldmount-executor: error: {msg}");
            if code == 2 {
                eprintln!("(see goldmount-executor --help)");
            }
            if json_requested {
                println!(
                    "{}",
                    serde_json::json!({ "error": { "message": msg, "exit_code": code } })
                );
            }
            ExitCode::from(code)
        }
    }
}
