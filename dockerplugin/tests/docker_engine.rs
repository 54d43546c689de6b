//! The plugin against a real dockerd (Debian's docker.io, a private engine
//! per test as ../shared/DOCKER.md describes), the real appliance binary
//! (loop backend) and the real engine: a gold disk with an fstab tree
//! (`/`, `/boot`, `/srv/data` on three partitions), containers reading and
//! writing it through `docker run -v NAME:/data`, and a check after each
//! `docker volume rm` that no mount, loop device, presentation or clone is
//! left. Missing prerequisites fail with the install command: no skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use goldmount_tests::golddisk;

#[test]
fn a_container_reads_the_whole_tree_writes_are_per_clone_and_rm_leaves_nothing() {
    let bed = Bed::new(60);
    let o = timed("docker volume create pg1", || {
        bed.create("pg1", &[&format!("source={GOLD}")])
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bed.create("pg2@default", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut listed = bed.docker_volumes();
    listed.sort();
    assert_eq!(listed, ["pg1", "pg2@default"]);
    let clones = bed.appl.client().list_clones().unwrap();
    assert_eq!(clones.len(), 2, "{clones:?}");
    assert_eq!(bed.appl.client().list_presentations().unwrap().len(), 2);

    // The fstab tree, submounts included, through Docker's bind of the mountpoint.
    let out = timed(
        "docker run -v pg1:/data (first mount, reads, writes)",
        || {
            bed.docker.ok(&[
            "run",
            "--rm",
            "-v",
            "pg1:/data",
            IMAGE,
            "sh",
            "-c",
            "cat /data/etc/hostname /data/boot/vmlinuz /data/srv/data/records.csv && echo written-in-pg1 > /data/srv/data/new.txt && cat /data/srv/data/new.txt",
        ])
        },
    );
    let want: String = golddisk::FILES.iter().map(|(_, c)| *c).collect();
    assert_eq!(out, format!("{want}written-in-pg1\n"));
    // Unmounted after the container (no ID holds it), the clone still presented.
    assert_eq!(mounts_under(&bed.cfg.mounts_root()), Vec::<String>::new());
    assert_eq!(bed.engine_volumes(), Vec::<String>::new());
    assert_eq!(bed.appl.client().list_presentations().unwrap().len(), 2);
    let (s, v) = bed.plugin_call("VolumeDriver.Path", r#"{"Name":"pg1"}"#);
    assert_eq!((s, v["Mountpoint"].as_str()), (200, Some("")), "{v}");

    // The write stays in pg1's clone; pg2 (same gold) does not see it.
    let out = bed.docker.ok(&[
        "run",
        "--rm",
        "-v",
        "pg1:/data",
        IMAGE,
        "cat",
        "/data/srv/data/new.txt",
    ]);
    assert_eq!(out, "written-in-pg1\n");
    let out = timed("docker run -v pg2@default:/data", || {
        bed.docker.ok(&[
            "run",
            "--rm",
            "-v",
            "pg2@default:/data",
            IMAGE,
            "sh",
            "-c",
            "cat /data/etc/hostname; test -e /data/srv/data/new.txt && echo LEAKED || echo isolated",
        ])
    });
    assert_eq!(out, "gold-host\nisolated\n");

    let (s, v) = bed.plugin_call("VolumeDriver.Get", r#"{"Name":"pg1"}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Volume"]["Status"]["gold"], GOLD);
    assert_eq!(v["Volume"]["Status"]["mounts"], 0);
    assert!(v["Volume"]["CreatedAt"].as_str().unwrap().ends_with('Z'));
    let (s, v) = bed.plugin_call("VolumeDriver.Capabilities", "{}");
    assert_eq!(
        (s, &v["Capabilities"]["Scope"]),
        (200, &serde_json::json!("local"))
    );
    let (s, v) = bed.plugin_call("VolumeDriver.Get", r#"{"Name":"nope"}"#);
    assert_eq!(s, 500);
    assert!(
        v["Err"].as_str().unwrap().contains("no such volume: nope"),
        "{v}"
    );

    timed("docker volume rm pg1 pg2@default", || {
        bed.docker.ok(&["volume", "rm", "pg1", "pg2@default"])
    });
    bed.assert_all_clean();
}

#[test]
fn docker_cp_keeps_the_volume_mounted_and_rm_is_refused_while_in_use() {
    let bed = Bed::new(60);
    let o = bed.create("cpv", &[&format!("source={GOLD}"), "read_only=false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    bed.docker.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "-v",
        "cpv:/data",
        IMAGE,
        "sleep",
        "600",
    ]);
    let mp = bed.mountpoint("cpv");
    let mounted = mounts_under(&mp);
    assert!(
        mounted.len() >= 3,
        "the tree with /boot and /srv/data: {mounted:?}"
    );

    let src = bed.dir.join("copied.txt");
    std::fs::write(&src, "copied in\n").unwrap();
    timed("docker cp into the running container", || {
        bed.docker
            .ok(&["cp", src.to_str().unwrap(), "c1:/data/srv/data/copied.txt"])
    });
    // docker cp sent Mount(B) and Unmount(B) with the container's ID: still mounted.
    assert_eq!(mounts_under(&mp), mounted);
    let out = bed.docker.ok(&[
        "exec",
        "c1",
        "cat",
        "/data/srv/data/copied.txt",
        "/data/boot/vmlinuz",
    ]);
    assert_eq!(out, format!("copied in\n{}", golddisk::FILES[1].1));

    // A second container on the volume has its own ID; when it goes, the
    // first one's mount stays.
    bed.docker.ok(&[
        "run",
        "--rm",
        "-v",
        "cpv:/data",
        IMAGE,
        "cat",
        "/data/srv/data/copied.txt",
    ]);
    assert_eq!(mounts_under(&mp), mounted);
    let (s, v) = bed.plugin_call("VolumeDriver.Get", r#"{"Name":"cpv"}"#);
    assert_eq!(
        (s, &v["Volume"]["Status"]["mounts"]),
        (200, &serde_json::json!(1)),
        "{v}"
    );

    // dockerd refuses by itself; the plugin refuses too when asked directly.
    let e = bed.docker.fails(&["volume", "rm", "cpv"]);
    assert!(e.contains("in use"), "{e}");
    let (s, v) = bed.plugin_call("VolumeDriver.Remove", r#"{"Name":"cpv"}"#);
    assert_eq!(s, 500, "{v}");
    let err = v["Err"].as_str().unwrap();
    assert!(
        err.contains("in use") && err.contains("stop the containers"),
        "{err}"
    );
    assert_eq!(mounts_under(&mp), mounted, "nothing was undone");
    let (s, v) = bed.plugin_call("VolumeDriver.Path", r#"{"Name":"cpv"}"#);
    assert_eq!((s, v["Mountpoint"].as_str()), (200, mp.to_str()), "{v}");

    timed("docker rm -f (Unmount at zero)", || {
        bed.docker.ok(&["rm", "-f", "c1"])
    });
    assert_eq!(mounts_under(&mp), Vec::<String>::new());
    bed.docker.ok(&["volume", "rm", "cpv"]);

    // -o read_only=true: every mount of the tree is read-only in the container.
    let o = bed.create("rov", &[&format!("source={GOLD}"), "read_only=true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = bed.docker.docker(&[
        "run",
        "--rm",
        "-v",
        "rov:/data",
        IMAGE,
        "sh",
        "-c",
        "cat /data/etc/hostname; for d in /data /data/boot /data/srv/data; do echo x > $d/w 2>/dev/null && echo WROTE $d; done; echo done",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "gold-host\ndone\n");
    bed.docker.ok(&["volume", "rm", "rov"]);
    bed.assert_all_clean();
}

#[test]
fn unknown_options_golds_and_profiles_create_nothing() {
    let bed = Bed::new(60);
    let cases: [(&str, Vec<String>, &str); 5] = [
        (
            "v1",
            vec![format!("source={GOLD}"), "size=10G".into()],
            "unknown option -o size",
        ),
        (
            "v2",
            vec!["source=nope".into()],
            "no gold copy \"nope\" on the appliance; it has: pg-gold",
        ),
        ("v3", vec![], "add -o source=<gold> (one of: pg-gold)"),
        (
            "v4@fast",
            vec![format!("source={GOLD}")],
            "unknown profile \"fast\": known profiles are default",
        ),
        (
            "v5",
            vec![format!("source={GOLD}"), "read_only=perhaps".into()],
            "expected true or false",
        ),
    ];
    for (name, opts, want) in cases {
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let o = bed.create(name, &opts);
        assert!(!o.status.success(), "{name} was created");
        let e = stderr(&o);
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.contains("nothing was created"), "{name}: {e}");
    }
    assert_eq!(bed.docker_volumes(), Vec::<String>::new());
    bed.assert_all_clean();
}

#[test]
fn a_failed_mount_leaves_nothing_behind() {
    let bed = Bed::new(3);
    let o = bed.create("fm", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = [
        "run",
        "--rm",
        "-v",
        "fm:/data",
        IMAGE,
        "cat",
        "/data/etc/hostname",
    ];

    // 1. The engine mounts the tree, the publication fails (the mountpoint
    // is not empty): the plugin unmounts what it mounted.
    let mp = bed.mountpoint("fm");
    std::fs::create_dir_all(&mp).unwrap();
    std::fs::write(mp.join("blocker"), "").unwrap();
    let out = bed.docker.docker(&run);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("unmounted again"), "{e}");
    bed.assert_host_clean();
    std::fs::remove_file(mp.join("blocker")).unwrap();
    std::fs::remove_dir(&mp).unwrap();

    // 2. The LUN never appears (unpresented behind the plugin's back): the
    // engine gives up after the wait and rolls back.
    let clone = bed.appl.client().list_clones().unwrap()[0].name.clone();
    bed.appl.client().unpresent_forced(&clone).unwrap();
    let out = timed("docker run with the LUN gone (3 s wait)", || {
        bed.docker.docker(&run)
    });
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("no loop device backed by") && e.contains("volume fm"),
        "{e}"
    );
    bed.assert_host_clean();
    assert_eq!(loops_backed_under(&bed.appl.data), Vec::<String>::new());
    let (s, v) = bed.plugin_call("VolumeDriver.Get", r#"{"Name":"fm"}"#);
    assert_eq!(
        (s, &v["Volume"]["Status"]["mounts"]),
        (200, &serde_json::json!(0)),
        "{v}"
    );

    // Removing it still cleans up (the presentation is gone already).
    bed.docker.ok(&["volume", "rm", "fm"]);
    bed.assert_all_clean();
}

#[test]
fn a_plugin_restart_while_a_container_runs_keeps_the_volume() {
    let mut bed = Bed::new(60);
    let o = bed.create("rs", &[&format!("source={GOLD}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    bed.docker.ok(&[
        "run", "-d", "--name", "c1", "-v", "rs:/data", IMAGE, "sleep", "600",
    ]);
    let mp = bed.mountpoint("rs");
    let mounted = mounts_under(&mp);
    assert!(mounted.len() >= 3, "{mounted:?}");

    timed("plugin restart", || bed.restart_plugin());
    assert_eq!(bed.docker_volumes(), ["rs"]);
    assert_eq!(mounts_under(&mp), mounted);
    let out = bed
        .docker
        .ok(&["exec", "c1", "cat", "/data/srv/data/records.csv"]);
    assert_eq!(out, golddisk::FILES[2].1);
    let (s, v) = bed.plugin_call("VolumeDriver.Get", r#"{"Name":"rs"}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Volume"]["Mountpoint"].as_str(), mp.to_str(), "{v}");
    let e = bed.docker.fails(&["volume", "rm", "rs"]);
    assert!(e.contains("in use"), "{e}");

    // The restarted plugin takes the Unmount and the Remove.
    bed.docker.ok(&["rm", "-f", "c1"]);
    assert_eq!(mounts_under(&mp), Vec::<String>::new());
    bed.docker.ok(&["volume", "rm", "rs"]);
    bed.assert_all_clean();
}

#[test]
fn goldmountd_serves_the_plugin_and_a_daemon_restart_keeps_a_running_containers_volume() {
    let mut bed = Bed::with_daemon();
    let o = timed("docker volume create through goldmountd", || {
        bed.create("dm", &[&format!("source={GOLD}")])
    });
    assert!(o.status.success(), "{}", stderr(&o));
    // The clone is presented to the host registration named (not the test's).
    let p = bed.appl.client().list_presentations().unwrap();
    assert_eq!(p.len(), 1);
    assert_ne!(p[0].host, HOST);
    bed.docker.ok(&[
        "run", "-d", "--name", "c1", "-v", "dm:/data", IMAGE, "sleep", "600",
    ]);
    let mp = bed.mountpoint("dm");
    let mounted = mounts_under(&mp);
    assert!(mounted.len() >= 3, "{mounted:?}");

    timed("goldmountd restart (SIGTERM, start)", || {
        bed.restart_daemon()
    });
    assert_eq!(bed.docker_volumes(), ["dm"]);
    assert_eq!(mounts_under(&mp), mounted);
    let out = bed.docker.ok(&[
        "exec",
        "c1",
        "cat",
        "/data/etc/hostname",
        "/data/boot/vmlinuz",
    ]);
    assert_eq!(
        out,
        format!("{}{}", golddisk::FILES[0].1, golddisk::FILES[1].1)
    );

    bed.docker.ok(&["rm", "-f", "c1"]);
    assert_eq!(mounts_under(&mp), Vec::<String>::new());
    bed.docker.ok(&["volume", "rm", "dm"]);
    bed.assert_all_clean();
}
