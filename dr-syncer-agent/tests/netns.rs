//! The data path across two network namespaces joined by a veth pair: the reader in one (a source
//! node, 10.77.0.1), the mover in the other (a DR node, 10.77.0.2), as on two machines.
//!
//! Needs CAP_NET_ADMIN (CI runs as root); without it the test says so and does nothing else.

mod common;

use std::{
    io::{Seek, SeekFrom, Write},
    process::Command,
    time::Duration,
};

use common::{
    AGENT, NetnsPair, Reader, ReaderOptions, TestDir, has_net_admin, random_bytes, run_with_timeout, tree,
};

fn last_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap()
}

/// A reader in the pair's source namespace, on its address, port 2222.
fn reader_in_source(net: &NetnsPair) -> Reader {
    Reader::start(ReaderOptions {
        netns: Some(net.source.clone()),
        listen: Some(net.source_ip.clone()),
        port: Some(2222),
        ..Default::default()
    })
}

#[test]
fn a_volume_moves_between_two_network_namespaces() {
    if !has_net_admin() {
        eprintln!("SKIPPED: this process lacks CAP_NET_ADMIN, needed to create network namespaces");
        return;
    }
    let net = NetnsPair::create();
    let reader = reader_in_source(&net);
    let vol = reader.volume("app");
    tree::build(&vol);
    reader.allow("app", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    let pin = dest.path().join("pin");
    std::fs::write(&pin, format!("{}\n", reader.pin())).unwrap();

    // Run the agent in the DR namespace.
    let in_dr = |mode: &str, host: &str, extra: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns", "exec", &net.dr, AGENT, mode, "--host", host, "--port", "2222",
        ])
        .arg("--host-key-file")
        .arg(&pin)
        .arg("--identity")
        .arg(&reader.client_key)
        .args(extra);
        run_with_timeout(&mut cmd, Duration::from_secs(300))
    };
    let mover = || {
        in_dr(
            "mover",
            &net.source_ip,
            &[
                "--source-path",
                &vol.display().to_string(),
                "--destination",
                &dst.display().to_string(),
                "--xattrs",
                "--retries",
                "0",
            ],
        )
    };

    // The namespaces are separate: the reader is not on the DR node's loopback, only at its node IP.
    let out = in_dr("probe", "127.0.0.1", &["--connect-timeout-secs", "5"]);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    let out = in_dr("probe", &net.source_ip, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        last_json(&out.stdout)["hostKeyFingerprint"],
        reader.host_key.fingerprint()
    );

    let out = mover();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(last_json(&out.stdout)["event"], "completed");
    tree::assert_same(&vol, &dst, true);
    assert!(tree::allocated(&dst.join("sparse.img")) < 8 << 20);

    // About 1 % changed: only the change crosses the link.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(vol.join("large.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    f.write_all(&random_bytes(77, 256 << 10)).unwrap();
    drop(f);
    let out = mover();
    assert!(out.status.success(), "{out:?}");
    let stats = &last_json(&out.stdout)["stats"];
    let changed = 256.0 * 1024.0;
    assert!(
        stats["bytesSent"].as_f64().unwrap() <= changed * 1.1 + 64.0 * 1024.0,
        "{stats}"
    );
    assert_eq!(stats["filesTransferred"], 1, "{stats}");
    tree::assert_same(&vol, &dst, true);

    // Deletions propagate.
    std::fs::remove_dir_all(vol.join("small")).unwrap();
    std::fs::remove_file(vol.join("large.bin")).unwrap();
    let out = mover();
    assert!(out.status.success(), "{out:?}");
    assert!(last_json(&out.stdout)["stats"]["filesDeleted"].as_u64().unwrap() >= 101);
    tree::assert_same(&vol, &dst, true);
}

/// A network partition of the DR node during a copy: the copy fails cleanly (no stall beyond the I/O
/// timeout, no partial file left as the real one), and once the link is back the next copy completes
/// with the data intact.
#[test]
fn a_partition_during_a_copy_fails_it_and_the_next_copy_completes() {
    if !has_net_admin() {
        eprintln!("SKIPPED: this process lacks CAP_NET_ADMIN, needed to create network namespaces");
        return;
    }
    let net = NetnsPair::create();
    let reader = reader_in_source(&net);
    let vol = reader.volume("part");
    let content = random_bytes(91, 16 << 20);
    std::fs::write(vol.join("large.bin"), &content).unwrap();
    reader.allow("part", &vol);
    let dest = TestDir::data("part-dest");
    let dst = dest.path().join("pvc");
    std::fs::create_dir_all(&dst).unwrap();
    let pin = dest.path().join("pin");
    std::fs::write(&pin, format!("{}\n", reader.pin())).unwrap();
    let mover = |extra: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &net.dr,
            AGENT,
            "mover",
            "--host",
            &net.source_ip,
            "--port",
            "2222",
        ])
        .arg("--host-key-file")
        .arg(&pin)
        .arg("--identity")
        .arg(&reader.client_key)
        .args(["--source-path", &vol.display().to_string()])
        .args(["--destination", &dst.display().to_string()])
        .args(["--retries", "0", "--io-timeout-secs", "3"])
        .args(extra);
        cmd
    };

    // A slow copy (1 MiB/s); the link goes down once data flows.
    let mut slow = mover(&["--bwlimit-kib", "1024"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_dir(&dst).unwrap().next().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    net.link(false);
    let out = {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if slow.try_wait().unwrap().is_some() {
                break slow.wait_with_output().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the partitioned copy did not end"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(last_json(&out.stdout)["event"], "failed", "{out:?}");
    assert!(
        !dst.join("large.bin").exists(),
        "no partial file in place of the real one"
    );

    // The link is back: the next copy completes, byte for byte.
    net.link(true);
    let out = run_with_timeout(&mut mover(&[]), Duration::from_secs(120));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(last_json(&out.stdout)["event"], "completed");
    assert!(
        std::fs::read(dst.join("large.bin")).unwrap() == content,
        "the data intact"
    );
}
