//! The agent image, as shipped (`scripts/build-images.sh`), run with podman: it reports the workspace
//! version, its reader serves a granted volume with the image's own sshd and rsync (confined to the
//! volume), and a mover started from the same image copies it to a destination, verified.
//!
//! Needs root and podman; without them (or without the image) it prints `SKIPPED` — CI builds the images
//! first and sets `DR_SYNCER_REQUIRE_IMAGES=1`, so there it never skips.

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use common::{TestDir, free_port, random_bytes, unique};
use dr_syncer_core::{
    keys::{CLIENT_KEY_FILE, KeyPair},
    pvc::{KeyBinding, TransferGrant},
    version::{AGENT_IMAGE, VERSION},
};
use dr_syncer_testenv::images::{Container, available_or_skip};

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn the_agent_image_serves_a_volume_to_a_mover_from_the_same_image() {
    let Some(podman) = available_or_skip(&[AGENT_IMAGE]) else {
        return;
    };
    // --version-json: the workspace version.
    let out = podman.run(&["run", "--rm", "--network", "none", AGENT_IMAGE, "--version-json"]);
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["version"], VERSION, "{info}");
    // scripts/build-images.sh builds the binaries with the commit they come from.
    let commit = info["git_commit"].as_str().unwrap_or_default();
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{info}"
    );

    // What the agent pod mounts: host keys, the accepted (probe) keys, the grants, its state directory
    // (sshd wants it root-owned, not writable by others), and the volume at its kubelet path.
    let state = TestDir::state("image-agent");
    let dir = |name: &str| {
        let d = state.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d.display().to_string()
    };
    let (host_keys, authorized, grants, run, keys) = (
        dir("host-keys"),
        dir("authorized-keys"),
        dir("grants"),
        dir("run"),
        dir("mover-keys"),
    );
    let host = KeyPair::generate_ed25519("agent").unwrap();
    write_private(
        &Path::new(&host_keys).join("ssh_host_ed25519_key"),
        &host.private_key_openssh(),
    );
    let probe = KeyPair::generate_ed25519("probe").unwrap();
    std::fs::write(
        Path::new(&authorized).join("probe.pub"),
        format!("{}\n", probe.public_key()),
    )
    .unwrap();
    let data = TestDir::data("image-volume");
    let content = random_bytes(11, 3 << 20);
    std::fs::write(data.path().join("big.bin"), &content).unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/small.txt"), "small\n").unwrap();
    let transfer = KeyPair::generate_ed25519("transfer").unwrap();
    let grant = TransferGrant {
        pod_uid: "app-uid".into(),
        volume: "pv-app".into(),
        host_path: None,
        binding: KeyBinding {
            key: transfer.public_key(),
            not_after: SystemTime::now() + Duration::from_secs(600),
            from: vec!["127.0.0.1".into()],
        },
    };
    std::fs::write(Path::new(&grants).join("shop.data"), grant.render()).unwrap();
    write_private(
        &Path::new(&keys).join(CLIENT_KEY_FILE),
        &transfer.private_key_openssh(),
    );
    std::fs::write(Path::new(&keys).join("pin"), format!("{}\n", host.public_key())).unwrap();

    let port = free_port().to_string();
    let volume_mount = format!(
        "{}:/var/lib/kubelet/pods/app-uid/volumes/kubernetes.io~csi/pv-app/mount:ro",
        data.path().display()
    );
    // As the DaemonSet runs it: a read-only root file system with nothing writable but its emptyDirs
    // (podman would otherwise add tmpfs mounts of its own), the state directory and /tmp.
    let tmp = dir("tmp");
    let agent = Container::start(
        &podman,
        &unique("drs-agent-"),
        &[
            "--read-only",
            "--read-only-tmpfs=false",
            "-v",
            &format!("{tmp}:/tmp"),
            "-v",
            &format!("{host_keys}:/etc/dr-syncer/host-keys:ro"),
            "-v",
            &format!("{authorized}:/etc/dr-syncer/authorized-keys:ro"),
            "-v",
            &format!("{grants}:/etc/dr-syncer/grants:ro"),
            "-v",
            &format!("{run}:/run/dr-syncer-agent"),
            "-v",
            &volume_mount,
            AGENT_IMAGE,
            "serve",
            "--port",
            &port,
            "--listen-address",
            "127.0.0.1",
            "--health-address",
            "off",
            "--grants-dir",
            "/etc/dr-syncer/grants",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agent.logs().contains("Server listening on") {
        assert!(
            Instant::now() < deadline,
            "the agent did not serve:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !agent.logs().contains("serving without --confine-root"),
        "the image's rsync confines itself:\n{}",
        agent.logs()
    );

    // The mover, from the same image, into a destination directory.
    let dest = TestDir::data("image-dest");
    let mover = podman.run(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "-v",
        &format!("{keys}:/etc/dr-syncer/mover-key:ro"),
        "-v",
        &format!("{}:/data", dest.path().display()),
        AGENT_IMAGE,
        "mover",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--host-key-file",
        "/etc/dr-syncer/mover-key/pin",
        "--identity",
        &format!("/etc/dr-syncer/mover-key/{CLIENT_KEY_FILE}"),
        "--grant",
        "shop.data",
        "--grant-wait-secs",
        "30",
        "--destination",
        "/data",
        "--verification",
        "full",
    ]);
    assert!(
        mover.status.success(),
        "mover: {}\n{}\nagent:\n{}",
        String::from_utf8_lossy(&mover.stdout),
        String::from_utf8_lossy(&mover.stderr),
        agent.logs()
    );
    assert!(
        std::fs::read(dest.path().join("big.bin")).unwrap() == content,
        "the data byte for byte"
    );
    assert_eq!(
        std::fs::read_to_string(dest.path().join("sub/small.txt")).unwrap(),
        "small\n"
    );
    // The forced command's audit log (in the state directory) recorded the grant's resolution.
    let audit = std::fs::read_to_string(Path::new(&run).join("audit.log")).unwrap();
    assert!(audit.contains("dr-syncer-resolve shop.data"), "{audit}");
}
