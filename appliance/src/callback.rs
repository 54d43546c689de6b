//! Asking a host's connector whether it still uses a clone, before the
//! appliance takes the clone's presentation away.
//!
//! Unpresenting a LUN a host has mounted makes the host's writes fail (or,
//! with the loop backend, go to an image that is about to be deleted), so
//! the appliance calls the connector daemon back (`GET /v1/volumes` on the
//! host's `callback_url`, mutual TLS: the server is verified against the
//! host's `callback_ca_pem`, the appliance presents `--client-cert`) and
//! looks for a volume built from the clone.
//!
//! A volume uses the clone when one of its recorded sources names the
//! clone's WWN or unit serial (iSCSI/FC, `sources[].presentation`), its WWID
//! (`sources[].wwid`), or its backing file (`sources[].file` for the loop
//! backend, `sources[].path` for an image attached directly), or when one
//! of its devices is the clone's loop device.

use crate::model::{Clone, Host, Presented};
use crate::tls::{self, Identity, UreqTls};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long the appliance waits for a connector.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connector said about a clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// No volume on the host uses the clone.
    Released,
    /// These volumes (by name) use it.
    InUse(Vec<String>),
}

/// An HTTPS agent for `host`'s connector (mutual TLS: the server verified
/// against the host's `callback_ca_pem`, the appliance's `identity` as
/// client certificate) and the connector's base URL. `timeout` bounds
/// connecting and each request unless a request sets its own.
pub fn connector_agent(
    identity: Option<&Identity>,
    host: &Host,
    timeout: Duration,
) -> Result<(ureq::Agent, String), String> {
    let url = host.callback_url.as_deref().ok_or_else(|| {
        format!(
            "host {:?} has no callback_url, so the appliance cannot ask its connector",
            host.name
        )
    })?;
    let ca = host.callback_ca_pem.as_deref().ok_or_else(|| {
        format!(
            "host {:?} has no callback_ca_pem to verify its connector at {url} with",
            host.name
        )
    })?;
    let identity = identity.ok_or_else(|| {
        "the appliance has no client certificate for the connector's mutual TLS \
         (start it with --client-cert and --client-key)"
            .to_string()
    })?;
    let what = format!("host {:?} callback_ca_pem", host.name);
    let roots = tls::certs_from_pem(&what, ca.as_bytes()).map_err(|e| e.to_string())?;
    let cfg = tls::client_config(roots, Some(identity), &what).map_err(|e| e.to_string())?;
    let agent = ureq::AgentBuilder::new()
        .tls_connector(std::sync::Arc::new(UreqTls(cfg)))
        .timeout_connect(timeout.min(CALLBACK_TIMEOUT))
        .timeout(timeout)
        .redirects(0)
        .build();
    Ok((agent, url.trim_end_matches('/').to_string()))
}

/// Asks `host`'s connector which of its volumes use `clone` (presented as
/// `presented`). `Err` says why the answer could not be had (no callback
/// URL, no client certificate, connector unreachable, an answer that does
/// not let the appliance tell).
pub fn usage(
    identity: Option<&Identity>,
    host: &Host,
    clone: &Clone,
    presented: &Presented,
) -> Result<Usage, String> {
    let (agent, url) = connector_agent(identity, host, CALLBACK_TIMEOUT)?;
    let list_url = format!("{url}/v1/volumes");
    let volumes: Value = match agent.get(&list_url).call() {
        Ok(r) => r
            .into_json()
            .map_err(|e| format!("the connector at {list_url} answered non-JSON: {e}"))?,
        Err(ureq::Error::Status(code, r)) => {
            let body = r.into_string().unwrap_or_default();
            return Err(format!(
                "the connector at {list_url} answered {code}: {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        Err(e) => return Err(format!("the connector at {list_url} is unreachable: {e}")),
    };
    let list = volumes.as_array().ok_or_else(|| {
        format!("the connector at {list_url} answered something other than a list of volumes")
    })?;
    match_volumes(list, clone, presented).map_err(|e| format!("{e} (connector at {list_url})"))
}

/// The volumes in `list` (the connector's `GET /v1/volumes` answer) that
/// use `clone`. `Err` when a volume cannot be told apart: it records no
/// sources and the presentation has nothing else to match (iSCSI).
pub fn match_volumes(
    list: &[Value],
    clone: &Clone,
    presented: &Presented,
) -> Result<Usage, String> {
    let mut using = Vec::new();
    let mut unknown = Vec::new();
    for v in list {
        let name = v
            .get("volume")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        let by_source = v
            .get("sources")
            .and_then(Value::as_array)
            .map(|s| s.iter().any(|s| source_matches(s, clone, presented)));
        let by_device = v.get("devices").and_then(Value::as_array).is_some_and(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .any(|d| device_matches(d, clone, presented))
        });
        match (by_source, by_device) {
            (Some(true), _) | (_, true) => using.push(name),
            (Some(false), false) => {}
            (None, false) => {
                if matches!(presented, Presented::Iscsi { .. }) {
                    unknown.push(name);
                }
            }
        }
    }
    if !using.is_empty() {
        return Ok(Usage::InUse(using));
    }
    if !unknown.is_empty() {
        return Err(format!(
            "the connector does not report the sources of volume(s) {unknown:?}, so the \
             appliance cannot tell whether they use the clone's LUN"
        ));
    }
    Ok(Usage::Released)
}

fn norm_wwn(w: &str) -> String {
    let w = w.trim().to_ascii_lowercase();
    let w = w.strip_prefix("naa.").unwrap_or(&w);
    let w = w.strip_prefix("0x").unwrap_or(w);
    w.to_string()
}

fn same_file(a: &str, b: &Path) -> bool {
    Path::new(a) == b
}

fn source_matches(s: &Value, clone: &Clone, presented: &Presented) -> bool {
    let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
    let str_at = |ptr: &str| s.pointer(ptr).and_then(Value::as_str);
    match (kind, presented) {
        ("iscsi" | "fc", Presented::Iscsi { wwn, serial, .. }) => {
            str_at("/presentation/wwn").is_some_and(|w| norm_wwn(w) == norm_wwn(wwn))
                || str_at("/presentation/serial").is_some_and(|s| s == serial)
        }
        ("wwid", Presented::Iscsi { wwn, .. }) => {
            str_at("/wwid").is_some_and(|w| norm_wwn(w) == norm_wwn(wwn))
        }
        ("loop_backing", _) => str_at("/file").is_some_and(|f| is_clone_file(f, clone, presented)),
        ("device", Presented::Loop { device, .. }) => {
            str_at("/path").is_some_and(|p| p == device || is_clone_file(p, clone, presented))
        }
        ("device", Presented::Iscsi { .. }) => {
            str_at("/path").is_some_and(|p| is_clone_file(p, clone, presented))
        }
        _ => false,
    }
}

fn is_clone_file(f: &str, clone: &Clone, presented: &Presented) -> bool {
    if same_file(f, &clone.file) {
        return true;
    }
    if let Presented::Loop { backing_file, .. } = presented {
        return f == backing_file;
    }
    false
}

/// A device of the volume is the clone's loop device (or a partition of
/// it), or a loop device on this machine backed by the clone's image (the
/// loop backend presents on the appliance machine itself, so its sysfs is
/// the host's).
fn device_matches(dev: &str, clone: &Clone, presented: &Presented) -> bool {
    let Presented::Loop {
        device,
        backing_file,
    } = presented
    else {
        return false;
    };
    if dev == device
        || dev
            .strip_prefix(device.as_str())
            .is_some_and(|rest| rest.starts_with('p'))
    {
        return true;
    }
    let Some(name) = Path::new(dev)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("loop"))
    else {
        return false;
    };
    std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .map(|b| {
            let b = b.trim_end_matches('\n');
            b == backing_file || same_file(b, &clone.file)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::copy::CopyMode;
    use serde_json::json;

    fn clone() -> Clone {
        Clone {
            name: "c1".into(),
            gold: "g".into(),
            point_in_time: "t".into(),
            file: "/data/clones/c1.img".into(),
            size: 1,
            copy_mode: CopyMode::Reflink,
            warning: None,
            unit_serial: "0b0b0b0b-1111-4111-8111-222222222222".into(),
            class: None,
            created: 0,
        }
    }

    #[test]
    fn iscsi_by_wwn_serial_and_wwid() {
        let p = Presented::Iscsi {
            target_iqn: "iqn.t".into(),
            portals: vec![],
            lun: 0,
            wwn: "naa.6001405AAAA".into(),
            serial: "0b0b0b0b-1111-4111-8111-222222222222".into(),
        };
        let c = clone();
        let list = vec![
            json!({"volume":"other","devices":["/dev/sdb"],"sources":[
                {"kind":"iscsi","presentation":{"wwn":"naa.6001405bbbb"}}]}),
            json!({"volume":"mine","devices":["/dev/sdc"],"sources":[
                {"kind":"iscsi","presentation":{"wwn":"naa.6001405aaaa"}}]}),
            json!({"volume":"by-wwid","devices":[],"sources":[
                {"kind":"wwid","wwid":"naa.6001405aaaa"}]}),
        ];
        assert_eq!(
            match_volumes(&list, &c, &p).unwrap(),
            Usage::InUse(vec!["mine".into(), "by-wwid".into()])
        );
        assert_eq!(match_volumes(&list[..1], &c, &p).unwrap(), Usage::Released);
        // A volume without recorded sources cannot be ruled out for iSCSI.
        let e = match_volumes(&[json!({"volume":"v","devices":["/dev/sdz"]})], &c, &p).unwrap_err();
        assert!(e.contains("\"v\""), "{e}");
        assert_eq!(match_volumes(&[], &c, &p).unwrap(), Usage::Released);
    }

    #[test]
    fn loop_by_backing_file_and_device() {
        let p = Presented::Loop {
            device: "/dev/loop7".into(),
            backing_file: "/data/clones/c1.img".into(),
        };
        let c = clone();
        let by_file = json!({"volume":"a","devices":["/dev/loop99"],"sources":[
            {"kind":"loop_backing","file":"/data/clones/c1.img","timeout":5}]});
        let by_dev = json!({"volume":"b","devices":["/dev/loop7p1"]});
        let neither = json!({"volume":"c","devices":["/dev/loop70"],"sources":[]});
        assert_eq!(
            match_volumes(&[by_file, by_dev, neither.clone()], &c, &p).unwrap(),
            Usage::InUse(vec!["a".into(), "b".into()])
        );
        assert_eq!(match_volumes(&[neither], &c, &p).unwrap(), Usage::Released);
    }
}
