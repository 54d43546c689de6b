//! Generates Rust bindings for open-iscsi's `libopeniscsiusr` with bindgen.
//!
//! The bindings are *dynamic* (a `libloading` struct): the library is opened
//! at run time as `libopeniscsiusr.so.0`, verbatim, because Debian ships no
//! `libopeniscsiusr.so` development symlink, and because a host without
//! open-iscsi (an FC-only host) must still run goldmount: then the sysfs
//! readers are used instead.
//!
//! Build prerequisites (Debian): `libopeniscsiusr-dev` (the headers) and
//! `libclang-dev` (bindgen's parser).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
    let header = "/usr/include/libopeniscsiusr.h";
    if !std::path::Path::new(header).exists() {
        panic!("{header} is missing: install the Debian package libopeniscsiusr-dev (and libclang-dev for bindgen)");
    }
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .dynamic_library_name("OpenIscsiUsr")
        .dynamic_link_require_all(true)
        .allowlist_function("iscsi_.*")
        .allowlist_function("vsnprintf")
        .allowlist_var("LIBISCSI_.*")
        .opaque_type("iscsi_context|iscsi_session|iscsi_iface|iscsi_node")
        .layout_tests(false)
        .wrap_unsafe_ops(true)
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen failed on libopeniscsiusr.h ({e}); is libclang-dev installed?")
        });
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    bindings
        .write_to_file(out.join("openiscsiusr.rs"))
        .unwrap_or_else(|e| panic!("writing bindings: {e}"));
}
