//! goldmountd: the daemon that puts goldmount's engine behind a mutual-TLS
//! control API, so the appliance can say "mount clone X here" and get the
//! manifest back. Front door only: every decision is the engine's; this
//! crate checks requests, runs engine calls off the async threads, keeps
//! one operation per volume at a time, and maps error kinds to HTTP.

pub mod api;
pub mod config;
pub mod docker_task;
pub mod error;
pub mod inflight;
pub mod logging;
pub mod metrics;
pub mod registration_task;
pub mod server;
pub mod tls;

pub use config::Config;
pub use server::{ServeError, Server, ShutdownReport};
