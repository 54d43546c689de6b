//! The deployment manifests against the driver they deploy: the manifest
//! check (`deploy/kubernetes/check.py`: CSIDriver fields, privileges,
//! propagation, RBAC, pinned images) passes, the CSIDriver's name is the
//! driver's, and every flag the manifests give `goldmount-csi` is one the
//! binary's mode accepts — a renamed flag fails here, not in a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_goldmount-csi");

fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (Debian's python3 and python3-yaml; cargo xtask test installs them)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_manifest_check_passes() {
    let out = Command::new("/usr/bin/python3")
        .arg(deploy_dir().join("check.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[mode, args…]` of every goldmount-csi container, and the CSIDriver names.
const EXTRACT: &str = r#"
import json, pathlib, sys, yaml
out = {"containers": [], "drivers": []}
for f in sorted(pathlib.Path(sys.argv[1]).rglob("*.yaml")):
    for o in yaml.safe_load_all(f.read_text()):
        if not o:
            continue
        if o.get("kind") == "CSIDriver":
            out["drivers"].append(o["metadata"]["name"])
        spec = (o.get("spec") or {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            if c.get("command") == ["goldmount-csi"]:
                out["containers"].append(c.get("args", []))
print(json.dumps(out))
"#;

#[test]
fn every_flag_the_manifests_give_is_one_the_binary_takes() {
    let found: serde_json::Value =
        serde_json::from_str(&python(EXTRACT, &[deploy_dir().to_str().unwrap()])).unwrap();
    assert_eq!(
        found["drivers"],
        serde_json::json!([goldmount_csi::DRIVER_NAME])
    );
    let containers = found["containers"].as_array().unwrap();
    let modes: Vec<&str> = containers
        .iter()
        .map(|c| c[0].as_str().unwrap_or_default())
        .collect();
    assert!(
        modes.contains(&"node") && modes.contains(&"controller"),
        "{modes:?}"
    );
    for c in containers {
        let args: Vec<&str> = c
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let help = Command::new(BIN)
            .args([args[0], "--help"])
            .output()
            .unwrap();
        assert!(help.status.success(), "goldmount-csi {} --help", args[0]);
        let help = String::from_utf8_lossy(&help.stdout);
        for a in &args[1..] {
            let flag = a.split('=').next().unwrap();
            assert!(
                flag.starts_with("--") && help.contains(&format!("{flag} ")),
                "the manifests give `goldmount-csi {} {a}`, which the binary does not take:\n{help}",
                args[0]
            );
        }
    }
}
