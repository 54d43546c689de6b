//! Host filesystem primitives for acting on untrusted clone content.
//!
//! A clone carries whatever was on the production disk, or whatever someone
//! put there: symlinks, `..` in fstab mount points, FIFOs, device nodes,
//! setuid binaries. Everything here is built so that nothing a clone holds can
//! make goldmount touch the host outside the volume:
//!
//! * [`clonefs`] resolves paths inside a clone relative to a directory file
//!   descriptor of its root (`openat2` with `RESOLVE_IN_ROOT`), creates
//!   directories with `mkdirat` on those fds, mounts onto the resolved fd and
//!   reads files without following links, with a size cap;
//! * [`mountfd`] mounts onto such a resolved directory fd and unmounts a
//!   mount only after checking, by fd, that it is the one that was made;
//! * [`loopdev`] attaches loop devices with the kernel ioctls, tagged with an
//!   owner string and autoclear, so a crash never leaves one behind and undo
//!   can prove a loop device is the one goldmount made;
//! * [`bind`] publishes a volume's whole tree at a caller's path (recursive
//!   bind, every submount read-only when asked) and takes it down again.

pub mod bind;
pub mod clonefs;
pub mod loopdev;
pub mod mountfd;
