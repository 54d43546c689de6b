//! goldmount's Docker volume plugin (the legacy v1 protocol dockerd finds
//! at `/run/docker/plugins/<name>.sock`), served inside goldmountd.
//!
//! `docker volume create -d goldmount -o source=<gold> NAME[@profile]`
//! records the volume and has the appliance clone the gold copy and
//! present the clone to this host; `docker run -v NAME:/data` gets the
//! original host's whole tree (`/`, `/boot`, `/srv/data`…) mounted by the
//! engine and published at the volume's mountpoint; `docker volume rm`
//! takes the tree, the presentation and the clone away. A thin door: the
//! engine decides everything about mounts, the appliance about clones.

pub mod appliance;
pub mod config;
pub mod driver;
pub mod error;
pub mod observe;
pub mod options;
pub mod profile;
pub mod server;
pub mod store;

pub use appliance::{ApplianceLink, HostName};
pub use config::{ApplianceAccess, DockerConfig};
pub use driver::{Driver, VolumeInfo};
pub use error::PluginError;
pub use server::{router, PluginServer};
