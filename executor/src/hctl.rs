//! SCSI addresses (host:channel:target:lun).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A SCSI device address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hctl {
    /// SCSI host number.
    pub host: u32,
    /// Channel (bus).
    pub channel: u32,
    /// Target id.
    pub target: u32,
    /// LUN.
    pub lun: u64,
}

impl fmt::Display for Hctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        )
    }
}

impl Serialize for Hctl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Hctl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let p: Vec<&str> = s.split(':').collect();
        let bad = || format!("not an H:C:T:L address: {s:?}");
        if p.len() != 4 {
            return Err(bad());
        }
        Ok(Hctl {
            host: p[0].parse().map_err(|_| bad())?,
            channel: p[1].parse().map_err(|_| bad())?,
            target: p[2].parse().map_err(|_| bad())?,
            lun: p[3].parse().map_err(|_| bad())?,
        })
    }
}
