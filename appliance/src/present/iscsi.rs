//! The `iscsi` backend: one LIO target per appliance, one fileio backstore
//! per presented clone (named `gm-<clone>`, with the clone's stable unit
//! serial, so its NAA WWN is stable too), one ACL per registered host IQN,
//! and one LUN per presented clone mapped into its host's ACLs. All configfs
//! work is delegated to [`crate::lio`].

use super::{PresentRequest, Presenter};
use crate::error::Error;
use crate::lio::{Backstore, Lio, LioConfig};
use crate::model::{Clone, Host, Presented};

/// Presents clones as LUNs of the appliance's LIO iSCSI target.
#[derive(Debug, Clone)]
pub struct IscsiPresenter {
    lio: Lio,
    cfg: LioConfig,
}

/// The LIO backstore name used for a clone.
pub fn backstore_name(clone: &str) -> String {
    format!("gm-{clone}")
}

impl IscsiPresenter {
    /// A presenter for the target described by `cfg`; touches nothing yet.
    pub fn new(cfg: LioConfig) -> Self {
        IscsiPresenter {
            lio: Lio::new(cfg.clone()),
            cfg,
        }
    }
}

impl Presenter for IscsiPresenter {
    fn transport(&self) -> &'static str {
        "iscsi"
    }

    fn prepare_host(&self, host: &Host) -> Result<(), Error> {
        if host.iqns.is_empty() {
            // An FC-only host: nothing for the iSCSI target to hold for it.
            return Ok(());
        }
        self.prepare(std::slice::from_ref(host))
    }

    fn prepare(&self, hosts: &[Host]) -> Result<(), Error> {
        self.lio.ensure_target()?;
        for iqn in hosts.iter().flat_map(|h| h.iqns.iter()) {
            self.lio.ensure_acl(iqn)?;
        }
        Ok(())
    }

    fn present(&self, req: &PresentRequest<'_>) -> Result<Presented, Error> {
        if req.host.iqns.is_empty() {
            return Err(Error::Invalid(format!(
                "host {:?} has no iSCSI initiator IQN registered; the iscsi backend needs one \
                 (it has WWPNs {:?}, but this appliance has no FC target)",
                req.host.name, req.host.wwpns
            )));
        }
        self.lio.ensure_target()?;
        for iqn in &req.host.iqns {
            self.lio.ensure_acl(iqn)?;
        }
        let name = backstore_name(&req.clone.name);
        let wwn = self.lio.ensure_backstore(&Backstore {
            name: name.clone(),
            file: req.clone.file.clone(),
            size: req.clone.size,
            unit_serial: req.clone.unit_serial.clone(),
        })?;
        self.lio.map_lun(req.lun, &name, &req.host.iqns)?;
        Ok(Presented::Iscsi {
            target_iqn: self.cfg.target_iqn.clone(),
            portals: self.cfg.portals.iter().map(|p| p.to_string()).collect(),
            lun: req.lun,
            wwn,
            serial: req.clone.unit_serial.clone(),
        })
    }

    fn unpresent(&self, clone: &Clone, presented: &Presented) -> Result<(), Error> {
        if let Presented::Iscsi { lun, .. } = presented {
            self.lio.unmap_lun(*lun)?;
        }
        self.lio.remove_backstore(&backstore_name(&clone.name))?;
        Ok(())
    }
}
