//! The gRPC server on a Unix socket: a stale socket file from an earlier
//! run is replaced (anything else at the path is refused), the socket is
//! made 0600 (only root — the kubelet — talks to the plugin), and the
//! node plugin's (Identity, Node) or the controller's (Identity,
//! Controller) services are served until `shutdown` resolves.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use connector::engine::Engine;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::NodeConfig;
use crate::proto::{
    controller_server::ControllerServer, identity_server::IdentityServer, node_server::NodeServer,
};
use crate::{ApplianceAccess, ControllerService, IdentityService, NodeService};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Something that is not a socket is at the socket path.
    #[error("{path} exists and is not a socket: expected the plugin's socket path; remove it or choose another --socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A filesystem or socket call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the gRPC server stopped: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Io { what, path, source }
}

/// Listens on `path`: a socket left by an earlier run is removed first, the
/// new one is made mode 0600. Must be called inside a tokio runtime.
pub fn bind_socket(path: &Path) -> Result<UnixListener, ServeError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(io("removing the stale socket", path))?
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("looking at", path)(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the socket's directory", dir))?;
    }
    let listener = UnixListener::bind(path).map_err(io("listening on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("making 0600", path))?;
    Ok(listener)
}

/// Serves Identity and Node over `engine` on `listener` until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    engine: Arc<Engine>,
    cfg: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(engine.clone())))
        .add_service(NodeServer::new(NodeService::new(engine, cfg)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Serves Identity and Controller over the appliance `access` names on
/// `listener` until `shutdown`.
pub async fn serve_controller(
    listener: UnixListener,
    access: ApplianceAccess,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::for_controller(
            access.clone(),
        )))
        .add_service(ControllerServer::new(ControllerService::new(access)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
