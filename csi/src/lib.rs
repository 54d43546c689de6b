//! goldmount's Kubernetes CSI driver: the Identity and Node services over
//! the engine (the node plugin), and the Identity and Controller services
//! over the appliance (the controller), served as gRPC on a Unix socket. Like the
//! Docker plugin and the daemon, this crate is a thin front door: it checks
//! and translates CSI requests into engine calls and engine error kinds into
//! gRPC codes; the engine does the work (attach, discover, mount the whole
//! tree, publish).
//!
//! The CSI types, clients and servers come from the `bpfman-csi` crate (the
//! CSI spec v1.8.0, generated for tonic 0.11), re-exported as [`proto`].

// Every RPC answers `Result<_, tonic::Status>` (the generated traits say
// so); the helpers that build those answers return the same type rather
// than boxing it only to unbox it at the trait.
#![allow(clippy::result_large_err)]

pub mod appliance;
pub mod capability;
pub mod config;
pub mod controller;
pub mod health;
pub mod identity;
pub mod inflight;
pub mod node;
pub mod page;
pub mod params;
pub mod reconcile;
pub mod server;
pub mod source;
pub mod stats;
pub mod status;

/// The CSI spec's messages, clients (`*_client`) and servers (`*_server`).
pub use bpfman_csi::v1 as proto;

pub use appliance::ApplianceAccess;
pub use config::NodeConfig;
pub use controller::ControllerService;
pub use identity::IdentityService;
pub use node::NodeService;
pub use server::{bind_socket, serve, serve_controller, ServeError};

/// The driver's name as Kubernetes knows it (the `CSIDriver` object's name).
pub const DRIVER_NAME: &str = "goldmount.csi.dev";
