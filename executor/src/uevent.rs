//! Kernel uevents over netlink (NETLINK_KOBJECT_UEVENT, kernel multicast
//! group): wakes `wait-for-device` as soon as a disk or dm map is added or
//! changed, with or without udevd, and without linking libudev.

use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::netlink::{SocketAddrNetlink, KOBJECT_UEVENT};
use rustix::net::{bind, recv, socket_with, AddressFamily, RecvFlags, SocketFlags, SocketType};

/// A listener subscribed to the kernel's uevent broadcast.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Subscribes to kernel uevents (group 1). Fails where netlink is not
    /// allowed (some containers): callers then poll sysfs instead.
    pub fn open() -> std::io::Result<Self> {
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(KOBJECT_UEVENT),
        )?;
        bind(&fd, &SocketAddrNetlink::new(0, 1))?;
        Ok(Self { fd })
    }

    /// Waits up to `timeout` for uevents and drains them. Returns whether any
    /// block or SCSI event arrived (a spurious wake-up only costs one more
    /// look at sysfs).
    pub fn wait(&self, timeout: Duration) -> bool {
        !self.wait_events(timeout).is_empty()
    }

    /// Like [`Listener::wait`], returning the relevant events as
    /// `ACTION DEVPATH` strings (e.g. `add /devices/virtual/block/loop3`).
    pub fn wait_events(&self, timeout: Duration) -> Vec<String> {
        let ts = Timespec::try_from(timeout).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => {}
            _ => return Vec::new(),
        }
        let mut events = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok((n, _)) = recv(&self.fd, &mut buf[..], RecvFlags::DONTWAIT) {
            if n == 0 {
                break;
            }
            let msg = &buf[..n];
            if is_relevant(msg) {
                events.push(summary(msg));
            }
        }
        events
    }
}

/// `ACTION DEVPATH` of a uevent message.
fn summary(msg: &[u8]) -> String {
    let field = |k: &[u8]| {
        msg.split(|b| *b == 0)
            .find_map(|f| f.strip_prefix(k))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    format!("{} {}", field(b"ACTION="), field(b"DEVPATH="))
}

/// True for uevents about block devices or SCSI devices.
pub fn is_relevant(msg: &[u8]) -> bool {
    msg.split(|b| *b == 0).any(|f| {
        f == b"SUBSYSTEM=block"
            || f == b"SUBSYSTEM=scsi"
            || f.starts_with(b"DEVPATH=/devices/virtual/block/dm-")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn relevance() {
        let add = b"add@/devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sdb\0ACTION=add\0DEVPATH=/devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sdb\0SUBSYSTEM=block\0DEVNAME=sdb\0";
        assert!(is_relevant(add));
        let net = b"add@/devices/virtual/net/x\0ACTION=add\0SUBSYSTEM=net\0";
        assert!(!is_relevant(net));
    }
}
