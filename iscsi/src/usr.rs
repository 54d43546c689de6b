//! open-iscsi's `libopeniscsiusr` through our bindgen bindings: sessions,
//! ifaces and node records. This is the only module with `unsafe`.
//!
//! The library is opened at run time as `libopeniscsiusr.so.0` (verbatim:
//! Debian ships no unversioned symlink), once per process. Its log output,
//! which by default goes to stderr, is redirected into `tracing`.

#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]

mod sys {
    #![allow(
        non_camel_case_types,
        non_upper_case_globals,
        non_snake_case,
        dead_code
    )]
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]
    include!(concat!(env!("OUT_DIR"), "/openiscsiusr.rs"));
}

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

use crate::error::IscsiError;
use crate::model::{Iface, Node, Portal, Session};

/// The soname opened at run time.
pub const SONAME: &str = "libopeniscsiusr.so.0";

static LIB: OnceLock<Result<sys::OpenIscsiUsr, String>> = OnceLock::new();

fn lib() -> Result<&'static sys::OpenIscsiUsr, IscsiError> {
    LIB.get_or_init(|| {
        // SAFETY: loading a shared library runs its initialisers; the
        // libopeniscsiusr of open-iscsi has none with side effects beyond
        // libc/libkmod setup, and every symbol we use is resolved (and its
        // signature fixed by bindgen from the same version's headers) here.
        unsafe { sys::OpenIscsiUsr::new(SONAME) }.map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| IscsiError::LibraryUnavailable(e.clone()))
}

/// Whether the library can be loaded on this host.
pub fn available() -> bool {
    lib().is_ok()
}

/// Copies a C string owned by the library; NULL becomes empty.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string alive for the duration of the call.
unsafe fn string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: non-NULL and NUL-terminated per this function's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Receives the library's log lines and forwards them to `tracing`.
unsafe extern "C" fn log_to_tracing(
    _ctx: *mut sys::iscsi_context,
    priority: c_int,
    file: *const c_char,
    line: c_int,
    func_name: *const c_char,
    format: *const c_char,
    args: *mut sys::__va_list_tag,
) {
    let Ok(l) = lib() else { return };
    let mut buf = [0 as c_char; 1024];
    // SAFETY: `format`/`args` are the printf pair the library passes us,
    // consumed exactly once; vsnprintf writes at most buf.len() bytes,
    // NUL-terminated.
    let n = unsafe { l.vsnprintf(buf.as_mut_ptr(), buf.len() as _, format, args) };
    if n < 0 {
        return;
    }
    // SAFETY: vsnprintf NUL-terminated `buf`; file/func are static strings
    // from the library (or NULL).
    let (msg, file, func) = unsafe { (string(buf.as_ptr()), string(file), string(func_name)) };
    let msg = msg.trim_end();
    match priority as u32 {
        sys::LIBISCSI_LOG_PRIORITY_ERROR => {
            tracing::warn!(target: "libopeniscsiusr", "{file}:{line} {func}: {msg}")
        }
        sys::LIBISCSI_LOG_PRIORITY_WARNING => {
            tracing::info!(target: "libopeniscsiusr", "{file}:{line} {func}: {msg}")
        }
        _ => tracing::debug!(target: "libopeniscsiusr", "{file}:{line} {func}: {msg}"),
    }
}

/// An `iscsi_context`, freed on drop.
struct Context {
    l: &'static sys::OpenIscsiUsr,
    ctx: *mut sys::iscsi_context,
}

impl Context {
    fn new() -> Result<Self, IscsiError> {
        let l = lib()?;
        // SAFETY: no preconditions; returns NULL on allocation failure.
        let ctx = unsafe { l.iscsi_context_new() };
        if ctx.is_null() {
            return Err(IscsiError::Library {
                call: "iscsi_context_new",
                code: sys::LIBISCSI_ERR_NOMEM as i32,
                message: "out of memory".into(),
            });
        }
        // SAFETY: `ctx` is a live context; the callback has exactly the
        // signature bindgen derived from the header and never unwinds.
        unsafe {
            l.iscsi_context_log_func_set(ctx, Some(log_to_tracing));
            l.iscsi_context_log_priority_set(ctx, sys::LIBISCSI_LOG_PRIORITY_WARNING as c_int);
        }
        Ok(Context { l, ctx })
    }

    fn check(&self, call: &'static str, rc: c_int) -> Result<(), IscsiError> {
        if rc == sys::LIBISCSI_OK as c_int {
            return Ok(());
        }
        // SAFETY: iscsi_strerror returns a static string for any int.
        let message = unsafe { string(self.l.iscsi_strerror(rc)) };
        Err(IscsiError::Library {
            call,
            code: rc,
            message,
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from iscsi_context_new and is freed once.
        unsafe { self.l.iscsi_context_free(self.ctx) }
    }
}

/// Reads an iface's fields.
///
/// # Safety
/// `iface` is a live `iscsi_iface` pointer.
unsafe fn read_iface(l: &sys::OpenIscsiUsr, iface: *mut sys::iscsi_iface) -> Iface {
    // SAFETY: per contract; the getters return strings owned by `iface`.
    unsafe {
        Iface {
            name: string(l.iscsi_iface_name_get(iface)),
            transport: string(l.iscsi_iface_transport_name_get(iface)),
            initiator_iqn: string(l.iscsi_iface_iname_get(iface)),
            ip_address: string(l.iscsi_iface_ipaddress_get(iface)),
            hw_address: string(l.iscsi_iface_hwaddress_get(iface)),
            netdev: string(l.iscsi_iface_netdev_get(iface)),
        }
    }
}

fn port(p: i32) -> u16 {
    u16::try_from(p).unwrap_or(0)
}

/// Every logged-in session, as the library sees it (it reads sysfs too, but
/// through open-iscsi's own interpretation).
pub fn sessions() -> Result<Vec<Session>, IscsiError> {
    let c = Context::new()?;
    let l = c.l;
    let mut ses: *mut *mut sys::iscsi_session = std::ptr::null_mut();
    let mut count: u32 = 0;
    // SAFETY: out-pointers are valid; on success the library allocates
    // `count` session pointers which we free below with iscsi_sessions_free.
    let rc = unsafe { l.iscsi_sessions_get(c.ctx, &mut ses, &mut count) };
    c.check("iscsi_sessions_get", rc)?;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        // SAFETY: i < count, `ses` holds `count` live pointers until freed.
        let se = unsafe { *ses.add(i) };
        if se.is_null() {
            continue;
        }
        // SAFETY: `se` is live; strings and the iface are owned by it and
        // copied before iscsi_sessions_free.
        let s = unsafe {
            let iface = l.iscsi_session_iface_get(se);
            let (iface_name, transport, initiator_iqn) = if iface.is_null() {
                Default::default()
            } else {
                let f = read_iface(l, iface);
                (f.name, f.transport, f.initiator_iqn)
            };
            let tpgt = l.iscsi_session_tpgt_get(se);
            Session {
                sid: l.iscsi_session_sid_get(se),
                target_iqn: string(l.iscsi_session_target_name_get(se)),
                tpgt: (tpgt >= 0).then_some(tpgt),
                portal: Portal::new(
                    string(l.iscsi_session_address_get(se)),
                    port(l.iscsi_session_port_get(se)),
                ),
                persistent_portal: Portal::new(
                    string(l.iscsi_session_persistent_address_get(se)),
                    port(l.iscsi_session_persistent_port_get(se)),
                ),
                iface_name,
                transport,
                initiator_iqn,
            }
        };
        out.push(s);
    }
    if !ses.is_null() {
        // SAFETY: exactly what iscsi_sessions_get returned, freed once.
        unsafe { l.iscsi_sessions_free(ses, count) };
    }
    out.sort_by_key(|s| s.sid);
    Ok(out)
}

/// Every iface open-iscsi knows (the defaults plus /etc/iscsi/ifaces).
pub fn ifaces() -> Result<Vec<Iface>, IscsiError> {
    let c = Context::new()?;
    let l = c.l;
    let mut ifs: *mut *mut sys::iscsi_iface = std::ptr::null_mut();
    let mut count: u32 = 0;
    // SAFETY: as for sessions(): valid out-pointers, freed below.
    let rc = unsafe { l.iscsi_ifaces_get(c.ctx, &mut ifs, &mut count) };
    c.check("iscsi_ifaces_get", rc)?;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        // SAFETY: i < count; live until iscsi_ifaces_free.
        let f = unsafe { *ifs.add(i) };
        if !f.is_null() {
            // SAFETY: live iface pointer.
            out.push(unsafe { read_iface(l, f) });
        }
    }
    if !ifs.is_null() {
        // SAFETY: what iscsi_ifaces_get returned, freed once.
        unsafe { l.iscsi_ifaces_free(ifs, count) };
    }
    Ok(out)
}

/// Every node record in open-iscsi's database (/etc/iscsi/nodes).
pub fn nodes() -> Result<Vec<Node>, IscsiError> {
    let c = Context::new()?;
    let l = c.l;
    let mut ns: *mut *mut sys::iscsi_node = std::ptr::null_mut();
    let mut count: u32 = 0;
    // SAFETY: as for sessions(): valid out-pointers, freed below.
    let rc = unsafe { l.iscsi_nodes_get(c.ctx, &mut ns, &mut count) };
    c.check("iscsi_nodes_get", rc)?;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        // SAFETY: i < count; live until iscsi_nodes_free.
        let n = unsafe { *ns.add(i) };
        if n.is_null() {
            continue;
        }
        // SAFETY: live node pointer; strings owned by it, copied here.
        let node = unsafe {
            let iface = string(l.iscsi_node_iface_name_get(n));
            Node {
                target_iqn: string(l.iscsi_node_target_name_get(n)),
                portal: Portal::new(
                    string(l.iscsi_node_conn_address_get(n)),
                    u16::try_from(l.iscsi_node_conn_port_get(n)).unwrap_or(0),
                ),
                tpgt: l.iscsi_node_tpgt_get(n),
                iface_name: (!iface.is_empty()).then_some(iface),
            }
        };
        out.push(node);
    }
    if !ns.is_null() {
        // SAFETY: what iscsi_nodes_get returned, freed once.
        unsafe { l.iscsi_nodes_free(ns, count) };
    }
    out.sort_by(|a, b| (&a.target_iqn, &a.portal).cmp(&(&b.target_iqn, &b.portal)));
    Ok(out)
}
