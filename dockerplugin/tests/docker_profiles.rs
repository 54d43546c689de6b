//! Storage profiles through a real dockerd and the real goldmountd: the
//! config's `[profiles.gold]` (class + read-only) and `[profiles.default]`
//! (class + allow_suid_dev) reach the appliance (the clone's class) and the
//! engine (the volume's options, the manifest's mounts, the container's
//! view); `-o read_only=false` overrides the profile's read-only; an
//! unknown profile is refused with nothing created; a profile PUT on the
//! control API applies to the next `docker volume create`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

const PROFILES: &str = "[profiles.gold]\nclass = \"gold\"\nread_only = true\n\
                        [profiles.default]\nclass = \"bronze\"\nallow_suid_dev = true\n";

/// The appliance's class of the clone behind Docker volume `base`.
fn clone_class(bed: &Bed, base: &str) -> Option<String> {
    let suffix = format!(".{}.{base}", bed.driver());
    let clones = bed.appl.client().list_clones().unwrap();
    let c = clones
        .iter()
        .find(|c| c.name.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no clone *{suffix} on the appliance: {clones:?}"));
    c.class.clone()
}

/// `docker volume inspect`'s Status of `name`.
fn status(bed: &Bed, name: &str) -> serde_json::Value {
    let out = bed
        .docker
        .ok(&["volume", "inspect", "--format", "{{json .Status}}", name]);
    serde_json::from_str(out.trim()).unwrap()
}

/// Mounts of the engine's manifest of `base`: (mount path, options).
fn manifest_mounts(bed: &Bed, base: &str) -> (bool, Vec<(String, String)>) {
    let v = bed.engine_volume(base);
    let m = v.manifest.expect("mounted volume has a manifest");
    assert_eq!(m.read_only, v.read_only);
    (
        v.read_only,
        m.mounts
            .iter()
            .map(|x| (x.mount_path.display().to_string(), x.options.clone()))
            .collect(),
    )
}

fn has_opt(opts: &str, o: &str) -> bool {
    opts.split(',').any(|x| x == o)
}

#[test]
fn profiles_give_the_clone_its_class_and_the_mount_its_options() {
    let bed = Bed::with_daemon_config(PROFILES);
    let (st, list) = bed.control_call("GET", "/v1/profiles", None);
    assert_eq!(st, 200, "{list}");
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["origin"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("default", "config"), ("gold", "config")]);

    // @gold: class gold on the appliance, read-only everywhere.
    let o = timed("docker volume create pg1@gold", || {
        bed.create("pg1@gold", &[&format!("source={GOLD}")])
    });
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(clone_class(&bed, "pg1").as_deref(), Some("gold"));
    let s = status(&bed, "pg1@gold");
    assert_eq!(
        (&s["profile"], &s["class"], &s["read_only"]),
        (&json!("gold"), &json!("gold"), &json!(true)),
        "{s}"
    );
    bed.docker.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "-v",
        "pg1@gold:/data",
        IMAGE,
        "sleep",
        "600",
    ]);
    let (ro, mounts) = manifest_mounts(&bed, "pg1");
    assert!(ro, "the engine mounted pg1@gold read-write");
    assert!(mounts.len() >= 3, "{mounts:?}");
    for (path, opts) in &mounts {
        assert!(has_opt(opts, "ro"), "{path}: {opts}");
        assert!(
            has_opt(opts, "nosuid") && has_opt(opts, "nodev"),
            "{path}: {opts}"
        );
    }
    let out = bed.docker.ok(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "cat /data/etc/hostname; for d in /data /data/boot /data/srv/data; do echo x > $d/w 2>/dev/null && echo WROTE $d; done; echo done",
    ]);
    assert_eq!(out, "gold-host\ndone\n");
    bed.docker.ok(&["rm", "-f", "c1"]);

    // @default: the configured default (class bronze, suid/dev allowed), read-write.
    let o = bed.create("pg2@default", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(clone_class(&bed, "pg2").as_deref(), Some("bronze"));
    bed.docker.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "-v",
        "pg2@default:/data",
        IMAGE,
        "sleep",
        "600",
    ]);
    let (ro, mounts) = manifest_mounts(&bed, "pg2");
    assert!(!ro);
    for (path, opts) in &mounts {
        assert!(has_opt(opts, "rw"), "{path}: {opts}");
        assert!(
            !has_opt(opts, "nosuid") && !has_opt(opts, "nodev"),
            "allow_suid_dev did not reach the engine: {path}: {opts}"
        );
    }
    let out = bed.docker.ok(&[
        "exec",
        "c2",
        "sh",
        "-c",
        "echo x > /data/srv/data/w && echo WROTE",
    ]);
    assert_eq!(out, "WROTE\n");
    bed.docker.ok(&["rm", "-f", "c2"]);

    // No profile named: the default. @gold with -o read_only=false: the
    // request wins over the profile's read_only, the class stays.
    let o = bed.create("pg3", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(clone_class(&bed, "pg3").as_deref(), Some("bronze"));
    assert_eq!(status(&bed, "pg3")["profile"], "default");
    let o = bed.create("pg4@gold", &[&format!("source={GOLD}"), "read_only=false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(clone_class(&bed, "pg4").as_deref(), Some("gold"));
    assert_eq!(status(&bed, "pg4@gold")["read_only"], false);

    // Unknown profile: refused, nothing created anywhere.
    let clones_before = bed.appl.client().list_clones().unwrap().len();
    let o = bed.create("pg5@platinum", &[&format!("source={GOLD}")]);
    assert!(!o.status.success(), "pg5@platinum was created");
    let e = stderr(&o);
    assert!(
        e.contains("unknown profile \"platinum\": known profiles are default, gold")
            && e.contains("nothing was created"),
        "{e}"
    );
    assert_eq!(
        bed.appl.client().list_clones().unwrap().len(),
        clones_before
    );
    assert!(!bed.docker_volumes().iter().any(|v| v.starts_with("pg5")));

    // A profile PUT at run time applies to the next create.
    let (st, p) = bed.control_call(
        "PUT",
        "/v1/profiles/platinum",
        Some(r#"{"class": "platinum", "read_only": true}"#),
    );
    assert_eq!(st, 201, "{p}");
    let o = bed.create("pg5@platinum", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(clone_class(&bed, "pg5").as_deref(), Some("platinum"));
    assert_eq!(status(&bed, "pg5@platinum")["read_only"], true);

    for v in ["pg1@gold", "pg2@default", "pg3", "pg4@gold", "pg5@platinum"] {
        bed.docker.ok(&["volume", "rm", v]);
    }
    bed.assert_all_clean();
}
