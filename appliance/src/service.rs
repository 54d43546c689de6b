//! The appliance's behaviour, independent of HTTP: validation, idempotency
//! and conflict rules, LUN allocation, and keeping the store and the
//! presentation backend in step. The REST API and the CLI both call this.

use crate::callback::{self, Usage};
use crate::copy::{self, CopyMode};
use crate::error::Error;
use crate::model::{
    now, Clone, CreateClone, Gold, Host, HostQuery, ImportGold, Present, Presentation, Presented,
    PutHost, RegisterHost,
};
use crate::names::{normalize_iqn, normalize_wwpn, validate_name};
use crate::present::{PresentRequest, Presenter};
use crate::source::{self, ImportPolicy, OpenedSource};
use crate::store::{Kind, Store};
use crate::tls::Identity;
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub mod mounts;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/goldmount-appliance";

/// The longest clone class name.
pub const MAX_CLASS: usize = 32;

/// Checks a clone class: a short name (1-32 characters from
/// `[A-Za-z0-9_.-]`, starting with a letter or digit), because it names a
/// pool or service level, is shown in lists and compared exactly.
pub fn validate_class(class: &str) -> Result<(), Error> {
    let ok = !class.is_empty()
        && class.len() <= MAX_CLASS
        && class.as_bytes()[0].is_ascii_alphanumeric()
        && class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "class: expected a short name of 1-{MAX_CLASS} characters from [A-Za-z0-9_.-] \
             starting with a letter or digit, found {class:?}"
        )))
    }
}

/// Where the appliance keeps its files, what it may import, and how it
/// authenticates to hosts' connectors.
#[derive(Debug, Clone)]
pub struct ApplianceConfig {
    /// Holds `state.redb`, `gold/` and `clones/`.
    pub data_dir: PathBuf,
    /// Which files and devices `POST /v1/gold-copies` may read.
    pub import: ImportPolicy,
    /// Client certificate for the connectors' mutual-TLS callback API.
    pub client_identity: Option<Identity>,
    /// How long `POST /v1/mounts` may take, connector included.
    pub mount_deadline: std::time::Duration,
    /// How long a host's connector waits for a presented LUN to appear
    /// (capped by what is left of `mount_deadline`).
    pub lun_wait: std::time::Duration,
}

impl ApplianceConfig {
    /// A configuration over `data_dir` that imports nothing through the API
    /// and has no client certificate.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ApplianceConfig {
            data_dir: data_dir.into(),
            import: ImportPolicy::default(),
            client_identity: None,
            mount_deadline: mounts::DEFAULT_MOUNT_DEADLINE,
            lun_wait: mounts::DEFAULT_LUN_WAIT,
        }
    }
}

/// Whether a create call made something new or found it already there
/// (the API answers 201 or 200 accordingly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Newly created.
    Created,
    /// Identical object already existed; nothing changed.
    Existing,
}

/// The appliance: store + data directory + presentation backend.
pub struct Appliance {
    data_dir: PathBuf,
    store: Store,
    presenter: Box<dyn Presenter>,
    import: ImportPolicy,
    client_identity: Option<Identity>,
    mount_deadline: std::time::Duration,
    lun_wait: std::time::Duration,
    /// Serialises every mutation so check-then-act sequences are atomic.
    /// Never held across a long copy or a call to another machine.
    lock: Mutex<()>,
    /// Names of gold copies and clones whose image is being copied (outside
    /// `lock`): `gold/NAME`, `clone/NAME`.
    pending: Mutex<BTreeSet<String>>,
}

/// A name reserved in [`Appliance::pending`] while its copy runs; released
/// on drop, so an error or a panic never leaves it reserved.
struct Reservation<'a> {
    app: &'a Appliance,
    key: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.app
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// A new file that is removed on drop unless kept.
struct NewFile<'a> {
    path: &'a Path,
    keep: bool,
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

impl Appliance {
    /// Opens (creating if needed) the data directory and its state store.
    /// Does not touch the kernel; call [`Appliance::reapply`] for that.
    pub fn open(cfg: &ApplianceConfig, presenter: Box<dyn Presenter>) -> Result<Self, Error> {
        for sub in ["", "gold", "clones"] {
            let d = cfg.data_dir.join(sub);
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let store = Store::open(&cfg.data_dir.join("state.redb"))?;
        Ok(Appliance {
            data_dir: cfg.data_dir.clone(),
            store,
            presenter,
            import: cfg.import.clone(),
            client_identity: cfg.client_identity.clone(),
            mount_deadline: cfg.mount_deadline,
            lun_wait: cfg.lun_wait,
            lock: Mutex::new(()),
            pending: Mutex::new(BTreeSet::new()),
        })
    }

    /// The presentation transport in use (`iscsi` or `loop`).
    pub fn transport(&self) -> &'static str {
        self.presenter.transport()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no partial state we rely on.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `what/name` for a copy in progress; call with `lock` held
    /// after checking the store, so a name is either stored, reserved, or
    /// free. A second request for a reserved name is a conflict.
    fn reserve(&self, what: &str, name: &str) -> Result<Reservation<'_>, Error> {
        let key = format!("{what}/{name}");
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !p.insert(key.clone()) {
            return Err(Error::Conflict(format!(
                "{what} {name:?} is being created by another request (its image is still being \
                 copied); retry when that request has finished"
            )));
        }
        Ok(Reservation { app: self, key })
    }

    /// Re-applies every stored presentation to the kernel (after a restart,
    /// the loop devices or the LIO config may be gone). Returns the clones
    /// that failed, with why; the others are back.
    pub fn reapply(&self) -> Result<Vec<(String, Error)>, Error> {
        let _g = self.guard();
        let hosts: Vec<Host> = self.store.list(Kind::Host)?;
        self.presenter.prepare(&hosts)?;
        let mut failed = Vec::new();
        for p in self.store.list::<Presentation>(Kind::Presentation)? {
            let res = (|| {
                let clone = self.need_clone(&p.clone)?;
                let host = self.need_host(&p.host)?;
                let lun = lun_of(&p.presented).unwrap_or(0);
                let presented = self.presenter.present(&PresentRequest {
                    clone: &clone,
                    host: &host,
                    lun,
                    previous: Some(&p.presented),
                })?;
                if presented != p.presented {
                    tracing::info!(clone = %p.clone, ?presented, "presentation changed on re-apply");
                    let mut p2 = p.clone();
                    p2.presented = presented;
                    self.store.put(Kind::Presentation, &p.clone, &p2)?;
                }
                Ok::<(), Error>(())
            })();
            if let Err(e) = res {
                tracing::error!(clone = %p.clone, error = %e, "could not re-apply presentation");
                failed.push((p.clone.clone(), e));
            }
        }
        Ok(failed)
    }

    // ---- hosts -------------------------------------------------------------

    /// Registers a host. The same name with the same identity returns the
    /// existing host (callback URL/CA are updated when given); a name or an
    /// initiator port already bound to something else is a conflict.
    pub fn register_host(&self, req: RegisterHost) -> Result<(Host, Outcome), Error> {
        let id = validate_identity(
            &req.name,
            &req.iqns,
            &req.wwpns,
            req.callback_url.as_deref(),
            req.callback_ca_pem.as_deref(),
        )?;
        let _g = self.guard();
        let all: Vec<Host> = self.store.list(Kind::Host)?;
        check_ports_free(&all, &req.name, &id.iqns, &id.wwpns)?;
        let (host, outcome) = match all.into_iter().find(|h| h.name == req.name) {
            Some(h) if h.iqns != id.iqns || h.wwpns != id.wwpns => {
                return Err(Error::Conflict(format!(
                    "host {:?} is registered with iqns {:?} wwpns {:?}; this request has iqns {:?} \
                     wwpns {:?} (PUT /v1/hosts/{} replaces a host's identity)",
                    h.name, h.iqns, h.wwpns, id.iqns, id.wwpns, h.name
                )))
            }
            Some(mut h) => {
                let mut changed = false;
                if req.callback_url.is_some() && req.callback_url != h.callback_url {
                    h.callback_url = req.callback_url;
                    changed = true;
                }
                if req.callback_ca_pem.is_some() && req.callback_ca_pem != h.callback_ca_pem {
                    h.callback_ca_pem = req.callback_ca_pem;
                    changed = true;
                }
                if changed {
                    self.store.put(Kind::Host, &h.name, &h)?;
                }
                (h, Outcome::Existing)
            }
            None => {
                let h = Host {
                    name: req.name,
                    iqns: id.iqns,
                    wwpns: id.wwpns,
                    callback_url: req.callback_url,
                    callback_ca_pem: req.callback_ca_pem,
                    created: now(),
                };
                self.store.put(Kind::Host, &h.name, &h)?;
                tracing::info!(host = %h.name, "registered host");
                (h, Outcome::Created)
            }
        };
        self.prepare_or_undo(&host, outcome, None)?;
        Ok((host, outcome))
    }

    /// Creates or replaces host `name`'s identity (initiator ports, callback
    /// URL and CA) — idempotent: the same body again changes nothing. A port
    /// owned by another host is a conflict, and so is changing the ports of
    /// a host that has presentations (its LUNs are mapped to the old ports).
    pub fn put_host(&self, name: &str, req: PutHost) -> Result<(Host, Outcome), Error> {
        validate_name("host", name)?;
        if let Some(n) = &req.name {
            if n != name {
                return Err(Error::Invalid(format!(
                    "name: the body names host {n:?} but the path names {name:?}; leave name out \
                     or make them equal"
                )));
            }
        }
        let id = validate_identity(
            name,
            &req.iqns,
            &req.wwpns,
            req.callback_url.as_deref(),
            req.callback_ca_pem.as_deref(),
        )?;
        let _g = self.guard();
        let all: Vec<Host> = self.store.list(Kind::Host)?;
        check_ports_free(&all, name, &id.iqns, &id.wwpns)?;
        let previous = all.into_iter().find(|h| h.name == name);
        let host = Host {
            name: name.to_string(),
            iqns: id.iqns,
            wwpns: id.wwpns,
            callback_url: req.callback_url,
            callback_ca_pem: req.callback_ca_pem,
            created: previous.as_ref().map_or_else(now, |h| h.created),
        };
        let outcome = match &previous {
            Some(h) if *h == host => return Ok((host, Outcome::Existing)),
            Some(h) => {
                if h.iqns != host.iqns || h.wwpns != host.wwpns {
                    let presented: Vec<String> = self
                        .store
                        .list::<Presentation>(Kind::Presentation)?
                        .into_iter()
                        .filter(|p| p.host == name)
                        .map(|p| p.clone)
                        .collect();
                    if !presented.is_empty() {
                        return Err(Error::Conflict(format!(
                            "host {name:?} has presentations of clones {presented:?}, mapped to \
                             its current ports (iqns {:?}, wwpns {:?}); unpresent them before \
                             changing its ports to iqns {:?}, wwpns {:?}",
                            h.iqns, h.wwpns, host.iqns, host.wwpns
                        )));
                    }
                }
                Outcome::Existing
            }
            None => Outcome::Created,
        };
        self.store.put(Kind::Host, name, &host)?;
        self.prepare_or_undo(&host, outcome, previous.as_ref())?;
        tracing::info!(
            host = name,
            created = (outcome == Outcome::Created),
            "host identity stored"
        );
        Ok((host, outcome))
    }

    /// Prepares the backend for `host` (its ACLs). On failure a new host is
    /// not kept and an updated one gets its previous record back: the
    /// caller sees the error, and a retry starts from a consistent state.
    fn prepare_or_undo(
        &self,
        host: &Host,
        outcome: Outcome,
        previous: Option<&Host>,
    ) -> Result<(), Error> {
        // Only this host: another host's state is not this request's concern
        // (every host was prepared when it registered, and on start).
        let Err(e) = self.presenter.prepare_host(host) else {
            return Ok(());
        };
        match (outcome, previous) {
            (Outcome::Created, _) => {
                self.store.delete(Kind::Host, &host.name)?;
                tracing::warn!(host = %host.name, error = %e, "registration undone: backend not prepared");
            }
            (Outcome::Existing, Some(prev)) => {
                self.store.put(Kind::Host, &host.name, prev)?;
                tracing::warn!(host = %host.name, error = %e, "host update undone: backend not prepared");
            }
            (Outcome::Existing, None) => {}
        }
        Err(e)
    }

    /// Hosts that own the initiator ports in `q` (all of them when `q` is
    /// empty). A port has one owner, so the list has at most one entry.
    pub fn find_hosts(&self, q: &HostQuery) -> Result<Vec<Host>, Error> {
        let iqn = q.iqn.as_deref().map(normalize_iqn).transpose()?;
        let wwpn = q.wwpn.as_deref().map(normalize_wwpn).transpose()?;
        Ok(self
            .list_hosts()?
            .into_iter()
            .filter(|h| iqn.as_ref().is_none_or(|i| h.iqns.contains(i)))
            .filter(|h| wwpn.as_ref().is_none_or(|w| h.wwpns.contains(w)))
            .collect())
    }

    /// All hosts, by name.
    pub fn list_hosts(&self) -> Result<Vec<Host>, Error> {
        self.store.list(Kind::Host)
    }

    /// One host.
    pub fn get_host(&self, name: &str) -> Result<Host, Error> {
        validate_name("host", name)?;
        self.need_host(name)
    }

    fn need_host(&self, name: &str) -> Result<Host, Error> {
        self.store
            .get(Kind::Host, name)?
            .ok_or_else(|| Error::NotFound {
                what: "host",
                name: name.to_string(),
            })
    }

    // ---- gold copies -------------------------------------------------------

    /// Imports an image file or block device on this machine as a gold copy
    /// (reflinked when possible), for an API caller: only what the import
    /// policy allows ([`ImportPolicy::open`]; 403 otherwise). Repeating the
    /// same import returns the existing gold copy; the same name from
    /// another source is a conflict.
    pub fn import_gold(&self, req: ImportGold) -> Result<(Gold, Outcome), Error> {
        validate_import(&req)?;
        let opened = self.import.open(&req.source)?;
        self.import_opened(req, opened)
    }

    /// [`Appliance::import_gold`] for the local CLI (direct mode): the
    /// source is opened with the invoking user's own permissions instead of
    /// through the API's import policy.
    pub fn import_gold_local(&self, req: ImportGold) -> Result<(Gold, Outcome), Error> {
        validate_import(&req)?;
        let opened = source::open_local(&req.source)?;
        self.import_opened(req, opened)
    }

    /// Reserves the name under the lock, copies from the opened source
    /// without it (a long copy must not stall every other call), and
    /// commits under the lock. A failed copy leaves neither a file nor a
    /// reservation behind.
    fn import_opened(&self, req: ImportGold, src: OpenedSource) -> Result<(Gold, Outcome), Error> {
        let reservation = {
            let _g = self.guard();
            if let Some(g) = self.store.get::<Gold>(Kind::Gold, &req.name)? {
                let same_pit = req
                    .point_in_time
                    .as_ref()
                    .is_none_or(|p| *p == g.point_in_time);
                if g.source == src.path && same_pit {
                    return Ok((g, Outcome::Existing));
                }
                return Err(Error::Conflict(format!(
                    "gold copy {:?} already exists from {} at point-in-time {:?}; this request: {} at {:?}",
                    g.name,
                    g.source.display(),
                    g.point_in_time,
                    src.path.display(),
                    req.point_in_time
                )));
            }
            self.reserve("gold copy", &req.name)?
        };
        let file = self.data_dir.join("gold").join(format!("{}.img", req.name));
        // A leftover file without a record (crash between copy and commit).
        let _ = std::fs::remove_file(&file);
        let out = copy::copy_from(&src.file, &src.path, &file)?;
        let mut new_file = NewFile {
            path: &file,
            keep: false,
        };
        // Read-only, and readable by the appliance's user only.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400))
            .map_err(|e| Error::io(format!("making {} read-only", file.display()), e))?;
        if let Some(why) = &out.reflink_error {
            tracing::warn!(gold = %req.name, %why, "gold copy imported by full copy");
        }
        let created = now();
        let g = Gold {
            name: req.name,
            file: file.clone(),
            size: out.size,
            source: src.path,
            point_in_time: req
                .point_in_time
                .unwrap_or_else(|| format!("imported-{created}")),
            copy_mode: out.mode,
            created,
        };
        {
            let _g = self.guard();
            self.store.put(Kind::Gold, &g.name, &g)?;
            new_file.keep = true;
            drop(reservation);
        }
        tracing::info!(gold = %g.name, size = g.size, mode = ?g.copy_mode, "imported gold copy");
        Ok((g, Outcome::Created))
    }

    /// All gold copies, by name.
    pub fn list_golds(&self) -> Result<Vec<Gold>, Error> {
        self.store.list(Kind::Gold)
    }

    /// One gold copy.
    pub fn get_gold(&self, name: &str) -> Result<Gold, Error> {
        validate_name("gold copy", name)?;
        self.store
            .get(Kind::Gold, name)?
            .ok_or_else(|| Error::NotFound {
                what: "gold copy",
                name: name.to_string(),
            })
    }

    // ---- clones ------------------------------------------------------------

    /// Creates a writable clone of a gold copy: a reflink when the data
    /// directory's file system supports it, otherwise a full copy with a
    /// `warning` saying so. Repeating the same request returns the clone.
    /// Like an import, the copy runs outside the lock.
    pub fn create_clone(&self, req: CreateClone) -> Result<(Clone, Outcome), Error> {
        validate_name("clone", &req.name)?;
        validate_name("gold copy", &req.gold)?;
        if let Some(class) = &req.class {
            validate_class(class)?;
        }
        let (gold, reservation) = {
            let _g = self.guard();
            let gold = self.get_gold(&req.gold)?;
            if let Some(pit) = &req.point_in_time {
                if *pit != gold.point_in_time {
                    return Err(Error::Invalid(format!(
                        "point_in_time: gold copy {:?} holds point-in-time {:?}, not {pit:?}",
                        gold.name, gold.point_in_time
                    )));
                }
            }
            if let Some(c) = self.store.get::<Clone>(Kind::Clone, &req.name)? {
                if c.gold == req.gold && c.point_in_time == gold.point_in_time {
                    if c.class != req.class {
                        return Err(Error::Conflict(format!(
                            "clone {:?} already exists with class {:?}; this request asks for class {:?}",
                            c.name, c.class, req.class
                        )));
                    }
                    return Ok((c, Outcome::Existing));
                }
                return Err(Error::Conflict(format!(
                    "clone {:?} already exists from gold copy {:?} at {:?}; this request asks for {:?}",
                    c.name, c.gold, c.point_in_time, req.gold
                )));
            }
            (gold, self.reserve("clone", &req.name)?)
        };
        let file = self
            .data_dir
            .join("clones")
            .join(format!("{}.img", req.name));
        let _ = std::fs::remove_file(&file);
        // Created 0600: writable by the appliance only.
        let out = copy::copy_image(&gold.file, &file)?;
        let mut new_file = NewFile {
            path: &file,
            keep: false,
        };
        let warning = match (out.mode, &out.reflink_error) {
            (CopyMode::FullCopy, why) => {
                let w = format!(
                    "clone is a full copy, not thin: {}",
                    why.as_deref().unwrap_or("reflink unavailable")
                );
                tracing::warn!(clone = %req.name, "{w}");
                Some(w)
            }
            (CopyMode::Reflink, _) => None,
        };
        let c = {
            let _g = self.guard();
            let c = Clone {
                name: req.name,
                gold: gold.name,
                point_in_time: gold.point_in_time,
                file: file.clone(),
                size: out.size,
                copy_mode: out.mode,
                warning,
                unit_serial: self.unique_unit_serial()?,
                class: req.class,
                created: now(),
            };
            self.store.put(Kind::Clone, &c.name, &c)?;
            new_file.keep = true;
            drop(reservation);
            c
        };
        tracing::info!(clone = %c.name, gold = %c.gold, mode = ?c.copy_mode, "created clone");
        Ok((c, Outcome::Created))
    }

    /// All clones, by name.
    pub fn list_clones(&self) -> Result<Vec<Clone>, Error> {
        self.store.list(Kind::Clone)
    }

    /// One clone.
    pub fn get_clone(&self, name: &str) -> Result<Clone, Error> {
        validate_name("clone", name)?;
        self.need_clone(name)
    }

    fn need_clone(&self, name: &str) -> Result<Clone, Error> {
        self.store
            .get(Kind::Clone, name)?
            .ok_or_else(|| Error::NotFound {
                what: "clone",
                name: name.to_string(),
            })
    }

    /// Deletes a clone and its image; refused while it is presented.
    pub fn delete_clone(&self, name: &str) -> Result<(), Error> {
        validate_name("clone", name)?;
        let _g = self.guard();
        let c = self.need_clone(name)?;
        if let Some(p) = self.store.get::<Presentation>(Kind::Presentation, name)? {
            return Err(Error::Conflict(format!(
                "clone {name:?} is presented to host {:?}; unpresent it first \
                 (DELETE /v1/presentations/{name})",
                p.host
            )));
        }
        let attached = self.presenter.still_attached(&c);
        if !attached.is_empty() {
            return Err(Error::Conflict(format!(
                "clone {name:?} is unpresented but its image is still held by {attached:?} \
                 (a mount or process on this machine keeps the device open); release it first"
            )));
        }
        match std::fs::remove_file(&c.file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", c.file.display()), e)),
        }
        self.store.delete(Kind::Clone, name)?;
        tracing::info!(clone = name, "deleted clone");
        Ok(())
    }

    // ---- presentations -----------------------------------------------------

    /// Presents a clone to a host. A clone is presented to one host at a
    /// time; presenting it again to the same host re-applies and returns the
    /// same presentation.
    pub fn present(&self, req: Present) -> Result<(Presentation, Outcome), Error> {
        validate_name("clone", &req.clone)?;
        validate_name("host", &req.host)?;
        let _g = self.guard();
        let clone = self.need_clone(&req.clone)?;
        let host = self.need_host(&req.host)?;
        let existing = self
            .store
            .get::<Presentation>(Kind::Presentation, &clone.name)?;
        if let Some(p) = &existing {
            if p.host != host.name {
                return Err(Error::Conflict(format!(
                    "clone {:?} is already presented to host {:?}; unpresent it before \
                     presenting it to {:?}",
                    clone.name, p.host, host.name
                )));
            }
        }
        let lun = match &existing {
            Some(p) => lun_of(&p.presented).unwrap_or(0),
            None => self.free_lun()?,
        };
        let presented = self.presenter.present(&PresentRequest {
            clone: &clone,
            host: &host,
            lun,
            previous: existing.as_ref().map(|p| &p.presented),
        })?;
        match existing {
            Some(mut p) => {
                if p.presented != presented {
                    p.presented = presented;
                    self.store.put(Kind::Presentation, &p.clone, &p)?;
                }
                Ok((p, Outcome::Existing))
            }
            None => {
                let p = Presentation {
                    clone: clone.name.clone(),
                    host: host.name,
                    presented,
                    created: now(),
                };
                if let Err(e) = self.store.put(Kind::Presentation, &p.clone, &p) {
                    // Do not leave a kernel object nobody knows about.
                    let _ = self.presenter.unpresent(&clone, &p.presented);
                    return Err(e);
                }
                tracing::info!(clone = %p.clone, host = %p.host, "presented");
                Ok((p, Outcome::Created))
            }
        }
    }

    /// Takes a clone's presentation away — after the host's connector has
    /// confirmed that no volume on the host uses the clone. In use, or no
    /// confirmation to be had (no callback URL, connector unreachable), is a
    /// conflict unless `force`. The connector is asked without holding the
    /// lock; the presentation is re-checked under it before it is removed.
    pub fn unpresent(&self, clone_name: &str, force: bool) -> Result<(), Error> {
        validate_name("clone", clone_name)?;
        let (p, clone, host) = {
            let _g = self.guard();
            let p = self.need_presentation(clone_name)?;
            let clone = self.need_clone(clone_name)?;
            let host = self.need_host(&p.host)?;
            (p, clone, host)
        };
        if force {
            tracing::warn!(clone = clone_name, host = %p.host, "unpresent forced: the host's use of the clone is not checked");
        } else {
            self.confirm_released(&host, &clone, &p.presented)?;
        }
        let _g = self.guard();
        let now_p = self.need_presentation(clone_name)?;
        if now_p != p {
            return Err(Error::Conflict(format!(
                "the presentation of clone {clone_name:?} changed while the host was being asked \
                 (now presented to {:?}); retry",
                now_p.host
            )));
        }
        self.presenter.unpresent(&clone, &p.presented)?;
        self.store.delete(Kind::Presentation, clone_name)?;
        tracing::info!(clone = clone_name, host = %p.host, forced = force, "unpresented");
        Ok(())
    }

    fn confirm_released(
        &self,
        host: &Host,
        clone: &Clone,
        presented: &Presented,
    ) -> Result<(), Error> {
        match callback::usage(self.client_identity.as_ref(), host, clone, presented) {
            Ok(Usage::Released) => Ok(()),
            Ok(Usage::InUse(volumes)) => Err(Error::Conflict(format!(
                "clone {:?} is in use on host {:?}: its connector has volume(s) {volumes:?} built \
                 from it; unmount them on the host first (goldmount unmount --volume NAME), or \
                 pass ?force=true to unpresent anyway (the host's writes will fail)",
                clone.name, host.name
            ))),
            Err(why) => Err(Error::Conflict(format!(
                "cannot confirm that host {:?} released clone {:?}: {why}; pass ?force=true to \
                 unpresent anyway if you know the host no longer uses it",
                host.name, clone.name
            ))),
        }
    }

    /// All presentations, by clone name.
    pub fn list_presentations(&self) -> Result<Vec<Presentation>, Error> {
        self.store.list(Kind::Presentation)
    }

    /// The presentation of one clone.
    pub fn get_presentation(&self, clone_name: &str) -> Result<Presentation, Error> {
        validate_name("clone", clone_name)?;
        self.need_presentation(clone_name)
    }

    fn need_presentation(&self, clone_name: &str) -> Result<Presentation, Error> {
        self.store
            .get(Kind::Presentation, clone_name)?
            .ok_or_else(|| Error::NotFound {
                what: "presentation of clone",
                name: clone_name.to_string(),
            })
    }

    /// Lowest LUN number no stored presentation uses.
    fn free_lun(&self) -> Result<u32, Error> {
        let used: std::collections::BTreeSet<u32> = self
            .store
            .list::<Presentation>(Kind::Presentation)?
            .iter()
            .filter_map(|p| lun_of(&p.presented))
            .collect();
        (0..=u32::from(u16::MAX))
            .find(|l| !used.contains(l))
            .ok_or_else(|| Error::Conflict("all LUN numbers 0..=65535 are in use".to_string()))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// A host's identity, validated and normalised (sorted, no duplicates).
struct ValidIdentity {
    iqns: Vec<String>,
    wwpns: Vec<String>,
}

fn validate_identity(
    name: &str,
    iqns: &[String],
    wwpns: &[String],
    callback_url: Option<&str>,
    callback_ca_pem: Option<&str>,
) -> Result<ValidIdentity, Error> {
    validate_name("host", name)?;
    let mut iqns = iqns
        .iter()
        .map(|i| normalize_iqn(i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut wwpns = wwpns
        .iter()
        .map(|w| normalize_wwpn(w))
        .collect::<Result<Vec<_>, _>>()?;
    iqns.sort();
    iqns.dedup();
    wwpns.sort();
    wwpns.dedup();
    if iqns.is_empty() && wwpns.is_empty() {
        return Err(Error::Invalid(format!(
            "host {name:?}: expected at least one initiator IQN (iqns) or FC WWPN (wwpns), found none"
        )));
    }
    if let Some(url) = callback_url {
        let ok = url
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        if !ok || url.len() > 2048 {
            return Err(Error::Invalid(format!(
                "callback_url: expected an https:// URL of the host's connector (at most 2048 \
                 characters), found {url:?}"
            )));
        }
    }
    if let Some(pem) = callback_ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") || pem.len() > 65536 {
            return Err(Error::Invalid(
                "callback_ca_pem: expected PEM text with at least one \
                 -----BEGIN CERTIFICATE----- block (at most 64 KiB)"
                    .to_string(),
            ));
        }
    }
    Ok(ValidIdentity { iqns, wwpns })
}

/// Conflict when another host than `name` owns one of the ports.
fn check_ports_free(
    all: &[Host],
    name: &str,
    iqns: &[String],
    wwpns: &[String],
) -> Result<(), Error> {
    for other in all.iter().filter(|h| h.name != name) {
        if let Some(i) = other.iqns.iter().find(|i| iqns.contains(i)) {
            return Err(Error::Conflict(format!(
                "initiator {i} is already registered to host {:?}",
                other.name
            )));
        }
        if let Some(w) = other.wwpns.iter().find(|w| wwpns.contains(w)) {
            return Err(Error::Conflict(format!(
                "WWPN {w} is already registered to host {:?}",
                other.name
            )));
        }
    }
    Ok(())
}

fn validate_import(req: &ImportGold) -> Result<(), Error> {
    validate_name("gold copy", &req.name)?;
    if let Some(l) = &req.point_in_time {
        validate_name("point-in-time label", l)?;
    }
    Ok(())
}

fn lun_of(p: &Presented) -> Option<u32> {
    match p {
        Presented::Iscsi { lun, .. } => Some(*lun),
        Presented::Loop { .. } => None,
    }
}

/// A fresh random unit serial in UUID form (as LIO itself generates), whose
/// hex digits give a unique NAA WWN.
impl Appliance {
    /// A fresh unit serial whose LIO NAA WWN differs from every existing
    /// clone's. LIO builds the WWN from only the first 25 hex digits of the
    /// serial, so two serials can differ and still give one WWN — and then
    /// multipathd would merge two different clones into one map.
    fn unique_unit_serial(&self) -> Result<String, Error> {
        let taken: std::collections::BTreeSet<String> = self
            .list_clones()?
            .iter()
            .map(|c| crate::lio::naa_wwn_for_serial(&c.unit_serial))
            .collect();
        serial_with_unique_wwn(&taken, new_unit_serial)
    }
}

/// The first serial from `generate` whose NAA WWN is not in `taken` (16
/// tries: with random serials a second one is already astronomically rare).
fn serial_with_unique_wwn(
    taken: &std::collections::BTreeSet<String>,
    mut generate: impl FnMut() -> Result<String, Error>,
) -> Result<String, Error> {
    for _ in 0..16 {
        let s = generate()?;
        if !taken.contains(&crate::lio::naa_wwn_for_serial(&s)) {
            return Ok(s);
        }
    }
    Err(Error::io(
        "choosing a unit serial",
        std::io::Error::other("16 serials in a row collided with existing WWNs"),
    ))
}

fn new_unit_serial() -> Result<String, Error> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    //! Service rules that do not depend on a kernel backend: LUN allocation
    //! and what is handed to the presenter. The presenter here records calls
    //! and answers like the iSCSI backend would (the real one needs LIO).
    use super::*;

    #[test]
    fn serial_whose_wwn_collides_is_replaced() {
        // Differs from the taken serial only after LIO's 25th hex digit.
        let taken_serial = "0b0b0b0b-0000-4000-8000-000000000001";
        let taken = [crate::lio::naa_wwn_for_serial(taken_serial)]
            .into_iter()
            .collect();
        let mut offered = vec![
            "0b0b0b0b-1111-4111-8111-222222222222".to_string(),
            "0b0b0b0b-0000-4000-8000-000000000002".to_string(),
        ];
        let s = serial_with_unique_wwn(&taken, || Ok(offered.pop().unwrap())).unwrap();
        assert_eq!(s, "0b0b0b0b-1111-4111-8111-222222222222");
        let e = serial_with_unique_wwn(&taken, || Ok(taken_serial.to_string())).unwrap_err();
        assert!(e.to_string().contains("collided"), "{e}");
    }
    use std::sync::{Arc, Mutex as StdMutex};

    #[derive(Default, Clone)]
    struct Recorder(Arc<StdMutex<Vec<String>>>);

    impl Presenter for Recorder {
        fn transport(&self) -> &'static str {
            "iscsi"
        }
        fn prepare(&self, hosts: &[Host]) -> Result<(), Error> {
            self.0
                .lock()
                .unwrap()
                .push(format!("prepare {}", hosts.len()));
            Ok(())
        }
        fn present(&self, req: &PresentRequest<'_>) -> Result<Presented, Error> {
            self.0
                .lock()
                .unwrap()
                .push(format!("present {} lun {}", req.clone.name, req.lun));
            Ok(Presented::Iscsi {
                target_iqn: "iqn.2026-11.test:t".into(),
                portals: vec!["127.0.0.1:3260".into()],
                lun: req.lun,
                wwn: crate::lio::naa_wwn_for_serial(&req.clone.unit_serial),
                serial: req.clone.unit_serial.clone(),
            })
        }
        fn unpresent(&self, clone: &Clone, p: &Presented) -> Result<(), Error> {
            self.0
                .lock()
                .unwrap()
                .push(format!("unpresent {} lun {:?}", clone.name, lun_of(p)));
            Ok(())
        }
    }

    #[test]
    fn lun_allocation_reuses_lowest_free_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("gm-svc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.img");
        std::fs::File::create(&src)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let cfg = ApplianceConfig::new(dir.join("data"));
        let rec = Recorder::default();
        let app = Appliance::open(&cfg, Box::new(rec.clone())).unwrap();
        app.import_gold_local(ImportGold {
            name: "g".into(),
            source: src,
            point_in_time: None,
        })
        .unwrap();
        app.register_host(RegisterHost {
            name: "h".into(),
            iqns: vec!["iqn.2026-11.test:h".into()],
            ..Default::default()
        })
        .unwrap();
        let mut serials = Vec::new();
        for n in ["a", "b", "c"] {
            let (c, _) = app
                .create_clone(CreateClone {
                    name: n.into(),
                    gold: "g".into(),
                    point_in_time: None,
                    class: None,
                })
                .unwrap();
            serials.push(c.unit_serial.clone());
            app.present(Present {
                clone: n.into(),
                host: "h".into(),
            })
            .unwrap();
        }
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), 3, "unit serials must be unique");
        app.unpresent("b", true).unwrap();
        app.create_clone(CreateClone {
            name: "d".into(),
            gold: "g".into(),
            point_in_time: None,
            class: None,
        })
        .unwrap();
        let (p, o) = app
            .present(Present {
                clone: "d".into(),
                host: "h".into(),
            })
            .unwrap();
        assert_eq!((lun_of(&p.presented), o), (Some(1), Outcome::Created));
        // Same request again: same LUN, nothing new.
        let (p2, o2) = app
            .present(Present {
                clone: "d".into(),
                host: "h".into(),
            })
            .unwrap();
        assert_eq!((p2, o2), (p, Outcome::Existing));
        drop(app);

        // Reopen: re-apply presents every stored presentation at its LUN.
        let rec2 = Recorder::default();
        let app = Appliance::open(&cfg, Box::new(rec2.clone())).unwrap();
        assert!(app.reapply().unwrap().is_empty());
        let calls = rec2.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                "prepare 1",
                "present a lun 0",
                "present c lun 2",
                "present d lun 1"
            ]
        );
        let first = rec.0.lock().unwrap().clone();
        assert!(
            first.contains(&"unpresent b lun Some(1)".to_string()),
            "{first:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_clone_keeps_its_class_and_a_bad_or_other_class_is_refused() {
        let dir = std::env::temp_dir().join(format!("gm-svc-class-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.img");
        std::fs::File::create(&src)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let cfg = ApplianceConfig::new(dir.join("data"));
        let app = Appliance::open(&cfg, Box::new(Recorder::default())).unwrap();
        app.import_gold_local(ImportGold {
            name: "g".into(),
            source: src,
            point_in_time: None,
        })
        .unwrap();
        let req = |name: &str, class: Option<&str>| CreateClone {
            name: name.into(),
            gold: "g".into(),
            point_in_time: None,
            class: class.map(str::to_string),
        };
        let (c, o) = app.create_clone(req("a", Some("gold"))).unwrap();
        assert_eq!((c.class.as_deref(), o), (Some("gold"), Outcome::Created));
        assert_eq!(app.get_clone("a").unwrap().class.as_deref(), Some("gold"));
        let (_, o) = app.create_clone(req("a", Some("gold"))).unwrap();
        assert_eq!(o, Outcome::Existing);
        let e = app.create_clone(req("a", Some("bronze"))).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Conflict, "{e}");
        assert!(e.to_string().contains("bronze"), "{e}");
        let e = app.create_clone(req("a", None)).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Conflict, "{e}");
        for bad in ["", "-x", "a b", "a/b", &"c".repeat(33)] {
            let e = app.create_clone(req("b", Some(bad))).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::BadRequest, "{bad:?}: {e}");
            assert!(e.to_string().contains("class"), "{e}");
        }
        assert!(
            app.get_clone("b").is_err(),
            "a refused class creates nothing"
        );
        let (c, _) = app.create_clone(req("c", None)).unwrap();
        assert_eq!(c.class, None);
        // Without a class the JSON has no class key (older readers unchanged).
        assert!(serde_json::to_value(&c).unwrap().get("class").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
