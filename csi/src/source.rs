//! Where a staged volume's data comes from, read from the
//! `publish_context` that the controller's `ControllerPublishVolume`
//! returns (and the CO hands to `NodeStageVolume` unchanged).
//!
//! Exactly one of these keys:
//! - `presentation`: the appliance's presentation document, JSON
//!   (`{"transport": "iscsi" | "fc" | "loop", …}`), as the appliance returns it;
//! - `loop_backing`: the appliance loop backend's clone file (the appliance
//!   attached it as one whole-file loop device; the engine waits for it);
//! - `device`: a block device node, or an image file that the engine
//!   attaches itself (offset loops for its partitions).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use connector::engine::{DeviceSource, Multipath};

use crate::status::RequestError;

/// Key of the appliance's presentation document.
pub const PRESENTATION: &str = "presentation";
/// Key of the appliance loop backend's clone file.
pub const LOOP_BACKING: &str = "loop_backing";
/// Key of a device node or image file attached by the engine.
pub const DEVICE: &str = "device";

/// How long a presented LUN or loop device is waited for.
pub const WAIT: Duration = Duration::from_secs(60);

/// The engine's device source for a `publish_context`.
pub fn from_publish_context(ctx: &HashMap<String, String>) -> Result<DeviceSource, RequestError> {
    let given: Vec<&str> = [PRESENTATION, LOOP_BACKING, DEVICE]
        .into_iter()
        .filter(|k| ctx.contains_key(*k))
        .collect();
    let key = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(RequestError::Missing {
                field: "publish_context (presentation, loop_backing or device)",
            })
        }
        more => {
            return Err(RequestError::Invalid {
                field: "publish_context",
                why: format!("expected one device source, found {}", more.join(", ")),
            })
        }
    };
    let value = ctx.get(key).map(String::as_str).unwrap_or_default();
    match key {
        PRESENTATION => {
            DeviceSource::from_presentation_json(value, WAIT, Multipath::Auto).map_err(|e| {
                RequestError::Invalid {
                    field: "publish_context.presentation",
                    why: e.message,
                }
            })
        }
        LOOP_BACKING => Ok(DeviceSource::LoopBacking {
            file: absolute("publish_context.loop_backing", value)?,
            timeout: WAIT,
        }),
        _ => Ok(DeviceSource::Device {
            path: absolute("publish_context.device", value)?,
        }),
    }
}

fn absolute(field: &'static str, value: &str) -> Result<PathBuf, RequestError> {
    let p = PathBuf::from(value);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(RequestError::Invalid {
            field,
            why: format!("expected an absolute path, found {value:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn one_source_is_required() {
        assert!(matches!(
            from_publish_context(&ctx(&[])),
            Err(RequestError::Missing { .. })
        ));
        assert!(matches!(
            from_publish_context(&ctx(&[(DEVICE, "/a"), (LOOP_BACKING, "/b")])),
            Err(RequestError::Invalid { .. })
        ));
    }

    #[test]
    fn each_key_gives_its_source() {
        assert_eq!(
            from_publish_context(&ctx(&[(DEVICE, "/img/a.img")])).unwrap(),
            DeviceSource::Device {
                path: "/img/a.img".into()
            }
        );
        assert_eq!(
            from_publish_context(&ctx(&[(LOOP_BACKING, "/c/clone.img")])).unwrap(),
            DeviceSource::LoopBacking {
                file: "/c/clone.img".into(),
                timeout: WAIT
            }
        );
        let p = from_publish_context(&ctx(&[(
            PRESENTATION,
            r#"{"transport":"loop","backing_file":"/c/x.img"}"#,
        )]))
        .unwrap();
        assert_eq!(
            p,
            DeviceSource::LoopBacking {
                file: "/c/x.img".into(),
                timeout: WAIT
            }
        );
        assert!(from_publish_context(&ctx(&[(DEVICE, "rel/a.img")])).is_err());
        assert!(from_publish_context(&ctx(&[(PRESENTATION, "{}")])).is_err());
    }
}
