//! `goldmount certs init DIR`: a development PKI for the control API — a CA,
//! the connector's server certificate and the appliance's client
//! certificate — for demos and tests. Real deployments bring their own PKI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// Arguments of `goldmount certs`.
#[derive(Args, Debug)]
pub struct CertsArgs {
    #[command(subcommand)]
    action: CertsAction,
}

#[derive(Subcommand, Debug)]
enum CertsAction {
    /// Write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem and
    /// client-key.pem into DIR (keys mode 0600); refuses to overwrite.
    Init {
        /// Where to write them (made if missing).
        dir: PathBuf,
        /// The server certificate's host name (default: this host's name).
        #[arg(long)]
        hostname: Option<String>,
        /// Another name or IP address the appliance reaches this host by
        /// (repeatable); localhost, 127.0.0.1 and ::1 are always included.
        #[arg(long = "san", value_name = "NAME|IP")]
        sans: Vec<String>,
        /// The client certificate's CN (what `client_subject` may require).
        #[arg(long, default_value = "goldmount-appliance")]
        client_cn: String,
        /// Replace an existing set.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `goldmount certs`.
pub fn run(args: &CertsArgs) -> Result<()> {
    match &args.action {
        CertsAction::Init {
            dir,
            hostname,
            sans,
            client_cn,
            force,
        } => {
            let opts = pki::DevPkiOptions {
                hostname: hostname.clone(),
                extra_sans: sans.clone(),
                client_cn: client_cn.clone(),
                force: *force,
                ..Default::default()
            };
            let set = pki::init_dev_pki(dir, &opts)
                .with_context(|| format!("writing a development PKI into {}", dir.display()))?;
            println!("CA:                  {}", set.ca_cert.display());
            println!(
                "server (goldmountd): {} (key {}), names: {}",
                set.server_cert.display(),
                set.server_key.display(),
                set.server_sans.join(", ")
            );
            println!(
                "client (appliance):  {} (key {})",
                set.client_cert.display(),
                set.client_key.display()
            );
            println!("for development and tests only: real deployments bring their own PKI");
            Ok(())
        }
    }
}
