//! The data path end to end on loopback: a real sshd started by `dr-syncer-agent serve`, the forced
//! command, the SSH bridge, and rsync on both sides.

mod common;

use std::{
    io::{Seek, SeekFrom, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use common::{AGENT, Reader, ReaderOptions, TestDir, random_bytes, run_with_timeout, tree};
use dr_syncer_core::{
    api::VerificationMode,
    data::{
        DataMover, DataMoverError, DataSource, RetryPolicy, TransferOptions, TransferProgress,
        TransferRequest,
    },
    keys::KeyPair,
};

fn options() -> TransferOptions {
    TransferOptions {
        xattrs: true,
        retry: RetryPolicy::none(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_volume_copies_exactly_then_only_changes_then_deletions() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("app");
    tree::build(&vol);
    reader.allow("app", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    // The comparison sees the ACL and the extended attribute (so their absence would show).
    let source = tree::snapshot(&vol, true).entries;
    assert!(
        source[Path::new("acl-file")]
            .acl
            .as_ref()
            .is_some_and(|a| a.contains("user:1234:rw-"))
    );
    assert!(
        source[Path::new("xattr-file")]
            .xattr
            .as_ref()
            .is_some_and(|x| x.contains("kept"))
    );

    let first = reader.pull(&vol, &dst, options()).await.unwrap();
    tree::assert_same(&vol, &dst, true);
    assert!(
        tree::allocated(&dst.join("sparse.img")) < 8 << 20,
        "the sparse file stays sparse: {} bytes allocated",
        tree::allocated(&dst.join("sparse.img"))
    );
    assert!(first.bytes_sent >= tree::LARGE as u64, "{first:?}");
    assert!(
        first.files_transferred > 100 && first.files_total > 100,
        "{first:?}"
    );
    assert_eq!(first.attempts, 1);

    // Nothing changed: nothing is sent again.
    let same = reader.pull(&vol, &dst, options()).await.unwrap();
    assert_eq!((same.files_transferred, same.literal_bytes), (0, 0), "{same:?}");

    // Change about 1 % of the data: 256 KiB inside the large file, and one small file.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(vol.join("large.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(5 << 20)).unwrap();
    f.write_all(&random_bytes(99, 256 << 10)).unwrap();
    drop(f);
    std::fs::write(vol.join("small/f010"), random_bytes(98, 2000)).unwrap();
    let changed: u64 = (256 << 10) + 2000;
    let total: u64 = first.total_bytes;
    assert!(changed * 100 / total <= 2, "the change is about 1 % of {total}");
    let delta = reader.pull(&vol, &dst, options()).await.unwrap();
    tree::assert_same(&vol, &dst, true);
    assert_eq!(delta.files_transferred, 2, "{delta:?}");
    // rsync resends whole blocks around the change (blocks of ~5 KiB for this file).
    assert!(delta.literal_bytes <= changed + 32 * 1024, "{delta:?}");
    assert!(
        delta.bytes_sent as f64 <= changed as f64 * 1.1 + 64.0 * 1024.0,
        "bytes sent {} for {changed} changed bytes",
        delta.bytes_sent
    );

    // Deletions propagate (files, a directory tree, one name of a hard-link group).
    std::fs::remove_dir_all(vol.join("docs/deep")).unwrap();
    std::fs::remove_file(vol.join("small/f000")).unwrap();
    std::fs::remove_file(vol.join("linked-c")).unwrap();
    let deleted = reader.pull(&vol, &dst, options()).await.unwrap();
    tree::assert_same(&vol, &dst, true);
    assert!(deleted.files_deleted >= 4, "{deleted:?}");
    assert!(!dst.join("docs/deep").exists());
}

/// A copy that brings only changes ends at 100 % (rsync's own last update counts the changed file
/// against the whole volume: 0 %), with the bytes of the files it sent.
#[tokio::test]
async fn a_copy_of_changes_only_reports_100_percent_at_the_end() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("orders");
    std::fs::write(vol.join("archive.bin"), random_bytes(3, 4 << 20)).unwrap();
    std::fs::write(vol.join("orders.log"), "order 1\n").unwrap();
    reader.allow("orders", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    reader.pull(&vol, &dst, options()).await.unwrap();

    std::fs::write(vol.join("orders.log"), "order 1\norder 2\n").unwrap();
    let request = TransferRequest {
        source: DataSource::Ssh(reader.endpoint(&vol)),
        destination: dst.clone(),
        options: options(),
    };
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: TransferProgress| seen.lock().unwrap().push(p);
    let stats = common::mover().transfer(&request, &progress).await.unwrap();
    assert_eq!(stats.files_transferred, 1, "{stats:?}");
    let seen = seen.into_inner().unwrap();
    let last = seen.last().expect("progress updates");
    assert_eq!(last.percent, Some(100), "{seen:?}");
    assert_eq!(last.bytes, 16, "the bytes of the one file sent: {seen:?}");
    assert_eq!(last.files_to_check, Some(0));
    assert_eq!(last.attempt, 1);
}

/// rsync compares the time of a directory or special file to the second (`--modify-window=0`), so a
/// copy whose time is in the same second as the source's keeps its own sub-second part. With the
/// allowed `--modify-window=-1` the times are compared and set to the nanosecond.
#[tokio::test]
async fn a_fifo_made_within_the_second_gets_exact_times_with_modify_window() {
    use nix::sys::stat::Mode;
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("pipes");
    nix::unistd::mkfifo(&vol.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    tree::set_mtime(&vol.join("fifo"), 1_700_000_000, 123_456_789);
    reader.allow("pipes", &vol);
    // The copy made earlier in the same second: same type, mode and owner, a different sub-second.
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    std::fs::create_dir_all(&dst).unwrap();
    nix::unistd::mkfifo(&dst.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    tree::set_mtime(&dst.join("fifo"), 1_700_000_000, 987_654_321);

    let exact = TransferOptions {
        extra_options: vec!["--modify-window=-1".into()],
        ..options()
    };
    reader.pull(&vol, &dst, exact).await.unwrap();
    let meta = std::fs::symlink_metadata(dst.join("fifo")).unwrap();
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_700_000_000, 123_456_789));
    tree::assert_same(&vol, &dst, true);
}

#[tokio::test]
async fn an_interrupted_transfer_resumes_without_resending_what_arrived() {
    const SIZE: usize = 48 << 20;
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("big");
    std::fs::write(vol.join("big.bin"), random_bytes(1, SIZE)).unwrap();
    reader.allow("big", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");

    // A slow (4 MiB/s) resumable transfer, stopped once 8 MiB have arrived: the caller drops it, as a
    // controller does when it shuts down, and rsync keeps the partial file.
    let request = TransferRequest {
        source: DataSource::Ssh(reader.endpoint(&vol)),
        destination: dst.clone(),
        options: TransferOptions {
            resumable: true,
            bandwidth_limit_kib: Some(4096),
            ..options()
        },
    };
    let arrived = std::sync::atomic::AtomicU64::new(0);
    let progress = |p: TransferProgress| arrived.store(p.bytes, Ordering::SeqCst);
    let mover = common::mover();
    tokio::select! {
        result = mover.transfer(&request, &progress) => panic!("the transfer ended before it was stopped: {result:?}"),
        () = async {
            while arrived.load(Ordering::SeqCst) < 8 << 20 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => {}
    }
    // rsync saves the partial file as it exits.
    let partial = dst.join("big.bin");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut kept = 0;
    loop {
        let size = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size == kept {
            break;
        }
        kept = size;
        assert!(std::time::Instant::now() < deadline, "no partial file kept");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        kept >= 4 << 20 && kept < SIZE as u64,
        "partial file: {kept} bytes"
    );

    let resumed = reader
        .pull(
            &vol,
            &dst,
            TransferOptions {
                resumable: true,
                ..options()
            },
        )
        .await
        .unwrap();
    tree::assert_same(&vol, &dst, false);
    assert!(
        resumed.literal_bytes <= SIZE as u64 - kept + (1 << 20),
        "resent {} of {SIZE} bytes although {kept} had arrived",
        resumed.literal_bytes
    );
}

#[tokio::test]
async fn the_time_limit_stops_a_transfer() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("slow");
    std::fs::write(vol.join("big.bin"), random_bytes(4, 16 << 20)).unwrap();
    reader.allow("slow", &vol);
    let dest = TestDir::data("dest");
    let err = reader
        .pull(
            &vol,
            &dest.path().join("pvc"),
            TransferOptions {
                bandwidth_limit_kib: Some(1024),
                timeout: Some(Duration::from_secs(2)),
                retry: RetryPolicy::default(),
                ..options()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DataMoverError::TimedOut(t) if t == Duration::from_secs(2)),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn files_that_vanish_fail_the_transfer_unless_allowed() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("vanish");
    std::fs::write(vol.join("a-big"), random_bytes(2, 12 << 20)).unwrap();
    std::fs::write(vol.join("z-small"), "going away").unwrap();
    std::fs::write(vol.join("z-other"), "going away too").unwrap();
    reader.allow("vanish", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");

    // While the big file streams (2 MiB/s), a file listed after it disappears.
    let run = |victim: &'static str, allow_incomplete: bool| {
        let request = TransferRequest {
            source: DataSource::Ssh(reader.endpoint(&vol)),
            destination: dst.clone(),
            options: TransferOptions {
                bandwidth_limit_kib: Some(2048),
                allow_incomplete,
                ..options()
            },
        };
        let vol = vol.clone();
        async move {
            let done = AtomicBool::new(false);
            let progress = |p: TransferProgress| {
                if p.bytes > 0 && !done.swap(true, Ordering::SeqCst) {
                    std::fs::remove_file(vol.join(victim)).unwrap();
                }
            };
            common::mover().transfer(&request, &progress).await
        }
    };
    let err = run("z-small", false).await.unwrap_err();
    assert!(
        matches!(err, DataMoverError::Incomplete { code: 24, .. }),
        "{err}"
    );
    assert!(err.is_transient(), "a vanished file is retried: {err}");
    let _ = std::fs::remove_dir_all(&dst);
    let stats = run("z-other", true).await.unwrap();
    assert!(stats.files_transferred >= 1);
    assert_eq!(
        std::fs::read(dst.join("a-big")).unwrap(),
        std::fs::read(vol.join("a-big")).unwrap()
    );
}

#[tokio::test]
async fn unreadable_files_fail_the_transfer_unless_allowed() {
    // rsync runs as nobody on the reader: a root-only file cannot be read (exit code 23).
    let reader = Reader::start(ReaderOptions {
        run_as: Some((65534, 65534)),
        ..Default::default()
    });
    let vol = reader.volume("locked");
    std::fs::write(vol.join("public"), "everyone").unwrap();
    std::fs::write(vol.join("secret"), "root only").unwrap();
    std::fs::set_permissions(vol.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    reader.allow("locked", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");

    let err = reader.pull(&vol, &dst, options()).await.unwrap_err();
    match &err {
        DataMoverError::Incomplete { code: 23, message } => {
            assert!(message.contains("Permission denied"), "{message}")
        }
        other => panic!("expected exit code 23, got {other}"),
    }
    assert!(!err.is_transient());
    assert_eq!(std::fs::read_to_string(dst.join("public")).unwrap(), "everyone");
    assert!(!dst.join("secret").exists());

    let stats = reader
        .pull(
            &vol,
            &dst,
            TransferOptions {
                allow_incomplete: true,
                ..options()
            },
        )
        .await
        .unwrap();
    assert_eq!(stats.attempts, 1);
}

#[tokio::test]
async fn verification_finds_silent_corruption_and_a_retry_repairs_it() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("verify");
    for i in 0..20 {
        std::fs::write(vol.join(format!("f{i:02}")), random_bytes(100 + i, 50_000)).unwrap();
    }
    reader.allow("verify", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");

    let full = TransferOptions {
        verification: VerificationMode::Full,
        ..options()
    };
    let stats = reader.pull(&vol, &dst, full.clone()).await.unwrap();
    assert!(stats.files_verified >= 20, "{stats:?}");
    let sample = TransferOptions {
        verification: VerificationMode::Sample,
        sample_percent: 25,
        ..options()
    };
    let stats = reader.pull(&vol, &dst, sample).await.unwrap();
    assert_eq!(stats.files_verified, 5, "{stats:?}");

    // Corrupt a copy without changing its size or time: rsync's quick check cannot see it.
    let victim = dst.join("f07");
    let mtime = std::fs::metadata(&victim).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    std::fs::File::open(&victim).unwrap().set_modified(mtime).unwrap();
    let plain = reader.pull(&vol, &dst, options()).await.unwrap();
    assert_eq!(
        plain.files_transferred, 0,
        "unverified, the difference goes unnoticed"
    );

    for opts in [
        full.clone(),
        TransferOptions {
            verification: VerificationMode::Sample,
            sample_percent: 100,
            ..options()
        },
    ] {
        let err = reader.pull(&vol, &dst, opts).await.unwrap_err();
        assert!(matches!(err, DataMoverError::Verification(_)), "{err}");
        assert!(err.to_string().contains("f07"), "{err}");
    }

    // With a retry, the second attempt copies by checksum and the verification passes.
    let repaired = reader
        .pull(
            &vol,
            &dst,
            TransferOptions {
                retry: RetryPolicy {
                    max_retries: 1,
                    initial_delay: Duration::from_millis(10),
                    ..Default::default()
                },
                ..full
            },
        )
        .await
        .unwrap();
    assert_eq!(repaired.attempts, 2);
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        std::fs::read(vol.join("f07")).unwrap()
    );
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_before_anything_moves() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("pinned");
    std::fs::write(vol.join("data"), "secret data").unwrap();
    reader.allow("pinned", &vol);
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("existing"), "keep me").unwrap();
    let before = tree::snapshot(&dst, false).entries;

    let impostor = KeyPair::generate_ed25519("impostor").unwrap();
    let mut endpoint = reader.endpoint(&vol);
    endpoint.pinned_host_key = impostor.public_key().to_openssh();
    let request = TransferRequest {
        source: DataSource::Ssh(endpoint),
        destination: dst.clone(),
        options: options(),
    };
    let err = common::mover().transfer(&request, &|_| {}).await.unwrap_err();
    assert!(matches!(err, DataMoverError::HostKeyMismatch { .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(
        tree::snapshot(&dst, false).entries,
        before,
        "destination untouched"
    );
    // The client never authenticated, so no command ever ran on the reader.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !reader.log_text().contains("Accepted publickey"),
        "{}",
        reader.log_text()
    );
    assert!(reader.audit().is_empty(), "{}", reader.audit());
}

#[tokio::test]
async fn an_unknown_client_key_is_refused() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("auth");
    std::fs::write(vol.join("data"), "secret data").unwrap();
    reader.allow("auth", &vol);
    let dest = TestDir::data("dest");
    let stranger = KeyPair::generate_ed25519("stranger").unwrap();
    let key = dest.path().join("stranger");
    std::fs::write(&key, stranger.private_key_openssh()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut endpoint = reader.endpoint(&vol);
    endpoint.client_key = key.clone();
    let request = TransferRequest {
        source: DataSource::Ssh(endpoint),
        destination: dest.path().join("pvc"),
        options: options(),
    };
    let err = common::mover().transfer(&request, &|_| {}).await.unwrap_err();
    assert!(
        matches!(err, DataMoverError::AuthenticationFailed { .. }),
        "{err}"
    );
    assert!(!dest.path().join("pvc/data").exists());

    let out = reader.ssh(&key, &[], Some("dr-syncer-probe"));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert!(reader.audit().is_empty());
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `dr-syncer-agent mover` against `reader`, with host key pins `pin`, into `destination`, no retries
/// (the caller adds the volume: `--source-path` or `--grant`).
fn mover_command(reader: &Reader, pin: &Path, destination: &Path) -> Command {
    mover_command_with_key(reader, pin, destination, &reader.client_key)
}

fn mover_command_with_key(reader: &Reader, pin: &Path, destination: &Path, key: &Path) -> Command {
    let mut cmd = Command::new(AGENT);
    cmd.args([
        "mover",
        "--host",
        &reader.host,
        "--port",
        &reader.port.to_string(),
    ])
    .arg("--host-key-file")
    .arg(pin)
    .arg("--identity")
    .arg(key)
    .arg("--destination")
    .arg(destination)
    .args(["--retries", "0"]);
    cmd
}

#[test]
fn the_mover_and_probe_commands_report_json_lines_and_exit_codes() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("cli");
    std::fs::write(vol.join("big"), random_bytes(3, 8 << 20)).unwrap();
    std::fs::write(vol.join("small"), "x").unwrap();
    reader.allow("cli", &vol);
    let dest = TestDir::data("dest");
    let pin = dest.path().join("pin");
    std::fs::write(&pin, format!("{}\n", reader.pin())).unwrap();
    let mover = |pin: &Path, extra: &[&str]| {
        let mut cmd = mover_command(&reader, pin, &dest.path().join("pvc"));
        cmd.args(["--source-path", &vol.display().to_string()])
            .args(extra);
        run_with_timeout(&mut cmd, Duration::from_secs(120))
    };
    let out = mover(&pin, &["--verification", "full", "--bwlimit-kib", "4096"]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "completed", "{lines:?}");
    assert_eq!(last["stats"]["filesTransferred"], 2);
    assert!(last["stats"]["bytesSent"].as_u64().unwrap() >= 8 << 20);
    assert!(last["stats"]["filesVerified"].as_u64().unwrap() >= 2);
    let progress: Vec<_> = lines.iter().filter(|l| l["event"] == "progress").collect();
    assert!(
        progress.len() >= 2,
        "progress at least every second of a 2 s transfer: {lines:?}"
    );
    assert!(progress.iter().all(|p| p["attempt"] == 1 && p["bytes"].is_u64()));

    // A wrong pin: exit code 3 and a `failed` line.
    let wrong = dest.path().join("wrong-pin");
    std::fs::write(
        &wrong,
        KeyPair::generate_ed25519("x").unwrap().public_key().to_openssh(),
    )
    .unwrap();
    let out = mover(&wrong, &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.last().unwrap()["kind"], "HostKeyMismatch");
    // An option outside the allow-list: exit code 2 before anything runs.
    let out = mover(&pin, &["--rsync-option", "--rsync-path=/bin/sh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let probe = |extra: &[&str]| {
        let mut cmd = Command::new(AGENT);
        cmd.args([
            "probe",
            "--host",
            &reader.host,
            "--port",
            &reader.port.to_string(),
        ])
        .arg("--host-key-file")
        .arg(&pin)
        .arg("--identity")
        .arg(&reader.client_key)
        .args(extra);
        run_with_timeout(&mut cmd, Duration::from_secs(60))
    };
    let out = probe(&[]);
    assert!(out.status.success(), "{out:?}");
    let line = &json_lines(&out.stdout)[0];
    assert_eq!(line["ok"], true);
    assert_eq!(line["hostKeyFingerprint"], reader.host_key.fingerprint());
    // The mover's preferred cipher for this CPU (AES-GCM with AES instructions, else ChaCha20-Poly1305)
    // is the one a stock sshd agrees to.
    assert_eq!(line["cipher"], dr_syncer_core::ssh::preferred_cipher());
    let out = probe(&["--volume-path", &vol.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    reader.revoke("cli");
    let out = probe(&["--volume-path", &vol.display().to_string()]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(json_lines(&out.stdout)[0]["kind"], "TransferRefused");
    // Several readers in one probe: one line each, failure when one does not answer.
    let term = dest.path().join("probe-termination-log");
    let out = probe(&[
        "--extra-host",
        "127.0.0.9",
        "--connect-timeout-secs",
        "3",
        "--termination-log",
        &term.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(
        (lines[0]["ok"].as_bool(), lines[1]["ok"].as_bool()),
        (Some(true), Some(false)),
        "{lines:?}"
    );
    assert_eq!(
        (lines[0]["host"].as_str(), lines[1]["host"].as_str()),
        (Some(reader.host.as_str()), Some("127.0.0.9"))
    );
    assert_eq!(std::fs::read_to_string(&term).unwrap().lines().count(), 2);
}

#[test]
fn the_reader_audits_requests_and_reports_health() {
    let reader = Reader::start(ReaderOptions {
        health: true,
        ..Default::default()
    });
    let out = reader.ssh(&reader.client_key, &[], Some("dr-syncer-probe"));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dr-syncer-agent ok"));
    let audit = reader.audit();
    let line: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(
        (line["accepted"].as_bool(), line["client"].as_str()),
        (Some(true), Some("127.0.0.1"))
    );
    let health = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(reader.health.unwrap()).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        health("/healthz").starts_with("HTTP/1.1 200"),
        "{}",
        health("/healthz")
    );
    assert!(health("/readyz").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_grant_is_served_by_the_node_that_has_its_volume_mounted() {
    let reader = Reader::start(ReaderOptions {
        grants: true,
        ..Default::default()
    });
    let vol = reader.volume("app");
    std::fs::write(vol.join("data.txt"), "granted data").unwrap();
    let dest = TestDir::data("dest");
    let pin = dest.path().join("pin");
    std::fs::write(&pin, format!("{}\n", reader.pin())).unwrap();
    let term = dest.path().join("termination-log");
    let mount = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let vol_text = vol.display().to_string();
    let mover = |grant: &str, wait: &str, key: &Path| {
        let mut cmd = mover_command_with_key(&reader, &pin, &dest.path().join("pvc"), key);
        cmd.args(["--grant", grant, "--grant-wait-secs", wait])
            .arg("--termination-log")
            .arg(&term);
        run_with_timeout(&mut cmd, Duration::from_secs(120))
    };

    // Not granted: the mover (with the cluster's probe key) waits, then fails as refused, and says so in
    // its termination message.
    let out = mover("ns.app", "1", &reader.client_key);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let last = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(last["kind"], "TransferRefused", "{last}");
    let message: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&term).unwrap()).unwrap();
    assert_eq!(message, last);
    assert!(!dest.path().join("pvc/data.txt").exists());

    // The grant names the pod, the PV and the transfer's own key; while the volume's directory is not a
    // mount point (the volume is not mounted, or the agent cannot see the mount) it is not served: an
    // empty directory must never be mirrored over the copy.
    let key = reader.grant_transfer("ns.app", "app", &["127.0.0.1"], Duration::from_secs(600));
    let out = mover("ns.app", "3", &key);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        reader.log_text().contains("not a mount point"),
        "{}",
        reader.log_text()
    );
    // Mounted (as the kubelet does): the agent resolves it on its node and the mover copies.
    mount(&["mount", "--bind", &vol_text, &vol_text]);
    // A grant whose pod is on another node resolves nowhere here.
    let other_key = reader.grant_transfer("ns.other", "other", &["127.0.0.1"], Duration::from_secs(600));
    let out = mover("ns.app", "30", &key);
    assert!(out.status.success(), "{out:?}\n{}", reader.log_text());
    let last = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(last["event"], "completed", "{last}");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("pvc/data.txt")).unwrap(),
        "granted data"
    );
    let message: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&term).unwrap()).unwrap();
    assert_eq!(message["event"], "completed");
    let allowed: Vec<_> = dr_syncer_agent::allow::AllowList::new(&reader.allow_dir)
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.path))
        .collect();
    assert_eq!(allowed, vec![("ns.app".to_string(), vol.clone())]);
    assert!(reader.audit().contains("dr-syncer-resolve ns.app"));
    // Another transfer's key, accepted by the agent, is told that this grant is not its own.
    let out = mover("ns.app", "1", &other_key);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not served to this key"),
        "{out:?}"
    );

    // Removing the grant revokes the volume and the key (at the agent's next pass): the next mover with
    // that key is not even let in.
    std::fs::remove_file(reader.grants_dir.join("ns.app")).unwrap();
    let list = dr_syncer_agent::allow::AllowList::new(&reader.allow_dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !list.entries().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the grant was not revoked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = mover("ns.app", "1", &key);
    assert_eq!(out.status.code(), Some(4), "authentication refused: {out:?}");
    mount(&["umount", &vol_text]);
}

/// The wiped-source brake: after a first copy, the source volume is emptied; the next mover run does
/// not mirror it (exit 10, `SourceLooksWiped`, the DR copy untouched), ordinary deletions are still
/// mirrored, and `--allow-wiped-source` mirrors the empty source when that is what is wanted.
#[test]
fn a_wiped_source_is_not_mirrored_unless_allowed() {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("wiped");
    for i in 0..5 {
        std::fs::write(vol.join(format!("f{i}")), format!("data {i}")).unwrap();
    }
    reader.allow("wiped", &vol);
    let dest = TestDir::data("wiped-dest");
    let pin = dest.path().join("pin");
    std::fs::write(&pin, format!("{}\n", reader.pin())).unwrap();
    let copy = dest.path().join("pvc");
    let mover = |extra: &[&str]| {
        let mut cmd = mover_command(&reader, &pin, &copy);
        cmd.args(["--source-path", &vol.display().to_string()])
            .args(extra);
        run_with_timeout(&mut cmd, Duration::from_secs(120))
    };
    let files = |dir: &Path| std::fs::read_dir(dir).unwrap().count();
    let out = mover(&[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(files(&copy), 5);

    // An ordinary deletion is mirrored.
    std::fs::remove_file(vol.join("f0")).unwrap();
    let out = mover(&[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(files(&copy), 4);

    // Emptied: not mirrored, and said so.
    for i in 1..5 {
        std::fs::remove_file(vol.join(format!("f{i}"))).unwrap();
    }
    let out = mover(&[]);
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    let lines = json_lines(&out.stdout);
    let last = lines.last().unwrap();
    assert_eq!(last["kind"], "SourceLooksWiped", "{lines:?}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("0 file(s)")
            && message.contains("4 file(s)")
            && message.contains("allow-wiped-source"),
        "{message}"
    );
    assert_eq!(files(&copy), 4, "the DR copy is untouched");
    assert_eq!(std::fs::read_to_string(copy.join("f3")).unwrap(), "data 3");

    // Told to: mirrored.
    let out = mover(&["--allow-wiped-source"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(files(&copy), 0);
}
