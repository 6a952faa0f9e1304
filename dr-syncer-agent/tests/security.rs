//! The reader's security, driven with the real OpenSSH client and rsync against the real sshd the agent
//! runs: only an rsync sender of an allowed volume gets through; shells, scp, sftp, forwarding, writes,
//! dangerous options and path escapes are refused; key rotation does not break a running transfer.

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use common::{Reader, ReaderOptions, TestDir, free_port, in_parallel, random_bytes, run_with_timeout, tree};
use dr_syncer_core::{
    data::{DataMover, DataSource, RetryPolicy, TransferOptions, TransferProgress, TransferRequest},
    keys::{AuthorizedClientKey, AuthorizedClientKeys, KeyPair},
};

const REFUSED: i32 = 77;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A reader with one allowed volume holding `data`.
fn reader_with_volume() -> (Reader, PathBuf) {
    let reader = Reader::start(ReaderOptions::default());
    let vol = reader.volume("vol");
    std::fs::write(vol.join("data"), "volume data\n").unwrap();
    reader.allow("vol", &vol);
    (reader, vol)
}

/// Pull `remote_path` with the stock rsync client over the stock ssh client into `dest`.
fn rsync_pull(reader: &Reader, extra: &[&str], remote_path: &str, dest: &Path) -> std::process::Output {
    let mut cmd = Command::new("rsync");
    cmd.arg("-a")
        .args(extra)
        .args(["-e", &reader.rsync_rsh(&reader.client_key)])
        .arg(format!("root@{}:{remote_path}", reader.host))
        .arg(dest);
    run_with_timeout(&mut cmd, Duration::from_secs(60))
}

#[test]
fn shells_commands_scp_and_sftp_are_refused() {
    let (reader, vol) = reader_with_volume();
    let key = &reader.client_key;

    let out = reader.ssh(key, &[], None);
    assert_eq!(out.status.code(), Some(REFUSED), "login shell: {out:?}");
    assert!(stderr(&out).contains("interactive"), "{out:?}");
    let out = reader.ssh(key, &["-tt"], None);
    assert!(!out.status.success(), "shell with a terminal: {out:?}");
    assert!(stderr(&out).contains("PTY allocation request failed"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let commands = [
        "id",
        "sh -c id",
        "/bin/bash -i",
        "cat /etc/shadow",
        "echo pwned > /tmp/pwned",
        "rsync --version",
        "dr-syncer-agent serve",
        "true",
    ];
    in_parallel(&commands, |command| {
        let out = reader.ssh(key, &[], Some(command));
        assert_eq!(out.status.code(), Some(REFUSED), "{command}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("uid=") && !stdout.contains("root:"),
            "{command}: {stdout}"
        );
    });
    assert!(!Path::new("/tmp/pwned").exists());

    let dest = TestDir::data("dest");
    let port = reader.port.to_string();
    let scp = |args: &[&str]| {
        let mut cmd = Command::new("scp");
        cmd.args(reader.ssh_options(key)).args(["-P", &port]).args(args);
        run_with_timeout(&mut cmd, Duration::from_secs(60))
    };
    let remote = format!("root@{}:{}/data", reader.host, vol.display());
    let local = dest.path().join("copy");
    // scp over SFTP (today's default), and the legacy scp protocol; both directions.
    let out = scp(&[&remote, &local.display().to_string()]);
    assert!(
        !out.status.success() && !local.exists(),
        "scp (sftp) download: {out:?}"
    );
    let out = scp(&["-O", &remote, &local.display().to_string()]);
    assert!(
        !out.status.success() && !local.exists(),
        "legacy scp download: {out:?}"
    );
    std::fs::write(dest.path().join("upload"), "evil").unwrap();
    let target = format!("root@{}:{}/uploaded", reader.host, vol.display());
    for legacy in [false, true] {
        let mut args = vec![];
        if legacy {
            args.push("-O");
        }
        let upload = dest.path().join("upload").display().to_string();
        args.extend([upload.as_str(), target.as_str()]);
        let out = scp(&args);
        assert!(!out.status.success(), "scp upload (legacy {legacy}): {out:?}");
        assert!(!vol.join("uploaded").exists());
    }

    let batch = dest.path().join("batch");
    std::fs::write(
        &batch,
        format!("get {}/data {}\n", vol.display(), local.display()),
    )
    .unwrap();
    let mut cmd = Command::new("sftp");
    cmd.args(reader.ssh_options(key))
        .args(["-P", &port, "-b"])
        .arg(&batch)
        .arg(format!("root@{}", reader.host));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(!out.status.success() && !local.exists(), "sftp: {out:?}");

    // Every request that reached the forced command was refused and audited.
    let audit = reader.audit();
    assert!(audit.lines().count() >= 10, "{audit}");
    assert!(!audit.contains("\"accepted\":true"), "{audit}");
}

/// Accepts connections and counts them.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"reached the target\n");
        }
    });
    (port, count)
}

fn connect_until(port: u16, timeout: Duration) -> TcpStream {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("port {port} never opened: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What a connection yields within ten seconds.
fn read_some(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn port_forwarding_of_every_kind_fails() {
    let (reader, _vol) = reader_with_volume();
    let (target, reached) = counting_listener();
    let ssh = |args: &[String]| {
        Command::new("ssh")
            .args(reader.ssh_options(&reader.client_key))
            .args(["-p", &reader.port.to_string(), "-N"])
            .args(args)
            .arg(format!("root@{}", reader.host))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Local forward (-L): the client listens, the reader refuses to open the connection.
    let local = free_port();
    let _l = Background(ssh(&["-L".into(), format!("{local}:127.0.0.1:{target}")]));
    let got = read_some(connect_until(local, Duration::from_secs(30)));
    assert!(
        got.is_empty(),
        "-L reached something: {:?}",
        String::from_utf8_lossy(&got)
    );

    // Dynamic forward (-D, SOCKS5): the CONNECT is refused.
    let socks = free_port();
    let _d = Background(ssh(&["-D".into(), socks.to_string()]));
    let mut s = connect_until(socks, Duration::from_secs(30));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0]);
    let mut connect = vec![5, 1, 0, 1, 127, 0, 0, 1];
    connect.extend(target.to_be_bytes());
    s.write_all(&connect).unwrap();
    let reply = read_some(s);
    assert!(
        reply.len() < 2 || reply[1] != 0,
        "-D CONNECT succeeded: {reply:?}"
    );

    // Remote forward (-R): refused at once.
    let remote = free_port();
    let mut r = ssh(&[
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
        "-R".into(),
        format!("{remote}:127.0.0.1:{target}"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = r.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ssh -R kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    r.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success(), "ssh -R: {err}");
    assert!(err.contains("forwarding failed"), "{err}");
    assert!(
        TcpStream::connect(("127.0.0.1", remote)).is_err(),
        "the reader listens for -R"
    );

    assert_eq!(reached.load(Ordering::SeqCst), 0, "a forward reached the target");
}

#[test]
fn writing_and_dangerous_options_are_refused() {
    let (reader, vol) = reader_with_volume();
    let before = tree::snapshot(&vol, false).entries;
    let v = vol.display().to_string();
    let key = &reader.client_key;

    // The receiver side of rsync (a write into the volume).
    let out = reader.ssh(
        key,
        &[],
        Some(&format!("rsync --server -logDtpre.iLsfxCIvu . {v}/")),
    );
    assert_eq!(out.status.code(), Some(REFUSED), "{out:?}");
    assert!(stderr(&out).contains("receiver"), "{out:?}");
    let src = TestDir::data("src");
    std::fs::write(src.path().join("evil"), "evil").unwrap();
    let mut push = Command::new("rsync");
    push.args(["-a", "-e", &reader.rsync_rsh(key)])
        .arg(format!("{}/", src.path().display()))
        .arg(format!("root@{}:{v}/", reader.host));
    let out = run_with_timeout(&mut push, Duration::from_secs(60));
    assert!(!out.status.success(), "push: {out:?}");

    // Options that read or write files on the reader, delete, follow links, or hide arguments.
    let options = [
        "--log-file=/tmp/drs-log",
        "--files-from=/etc/passwd",
        "--files-from=-",
        "--exclude-from=/etc/shadow",
        "--temp-dir=/tmp",
        "-T",
        "--partial-dir=/tmp",
        "--backup-dir=/tmp",
        "-b",
        "--write-batch=/tmp/drs-batch",
        "--read-batch=/tmp/drs-batch",
        "--only-write-batch=/tmp/drs-batch",
        "--remove-source-files",
        "--remove-sent-files",
        "-L",
        "--copy-links",
        "-k",
        "--copy-unsafe-links",
        "--copy-devices",
        "--insecure-links",
        "-s",
        "--daemon",
    ];
    in_parallel(&options, |option| {
        let command = format!("rsync --server --sender -logDtpre.iLsfxCIvu {option} . {v}/");
        let out = reader.ssh(key, &[], Some(&command));
        assert_eq!(out.status.code(), Some(REFUSED), "{option}: {out:?}");
        let name = option.split('=').next().unwrap();
        assert!(stderr(&out).contains(name), "{option}: {}", stderr(&out));
    });
    assert!(!Path::new("/tmp/drs-log").exists() && !Path::new("/tmp/drs-batch").exists());

    // The same through the stock rsync client.
    let dest = TestDir::data("dest");
    let client_options = [
        &["--remove-source-files"][..],
        &["-L"],
        &["--copy-unsafe-links"],
        &["--files-from=:/etc/passwd"],
        &["--rsync-path=rsync --log-file=/tmp/drs-log"],
        &["--secluded-args"],
    ];
    in_parallel(&client_options, |extra| {
        let out = rsync_pull(&reader, extra, &format!("{v}/"), &dest.path().join("pvc"));
        assert!(!out.status.success(), "{extra:?}: {out:?}");
    });
    assert!(!dest.path().join("pvc/data").exists());
    assert_eq!(
        tree::snapshot(&vol, false).entries,
        before,
        "the volume is unchanged"
    );
    assert!(
        !reader.audit().contains("\"accepted\":true"),
        "{}",
        reader.audit()
    );

    // …while a plain pull works.
    let out = rsync_pull(&reader, &[], &format!("{v}/"), &dest.path().join("pvc"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("pvc/data")).unwrap(),
        "volume data\n"
    );
}

#[test]
fn paths_outside_the_allowed_volumes_are_refused() {
    let (reader, vol) = reader_with_volume();
    let v = vol.display().to_string();
    // A secret next to the volumes, a volume that is not allowed, a symlink out of the volume.
    let outside = reader.kubelet.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "secret").unwrap();
    let other = reader.volume("other");
    std::fs::write(other.join("secret"), "secret").unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("escape")).unwrap();
    std::fs::create_dir(vol.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("sub/link")).unwrap();

    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    let parent = vol.parent().unwrap().display().to_string();
    let refused_pull = |path: &str| {
        let out = rsync_pull(&reader, &[], path, &dst);
        assert!(!out.status.success(), "{path}: {out:?}");
        let leaked = std::process::Command::new("grep")
            .args(["-r", "-l", "secret", &dst.display().to_string()])
            .output()
            .unwrap();
        assert!(leaked.stdout.is_empty(), "{path} leaked {:?}", leaked.stdout);
    };
    let escapes = [
        format!("{v}/../../"),
        format!("{v}/.."),
        format!("{v}/./"),
        format!("{v}//"),
        format!("/{v}/"),
        format!("{}/", outside.display()),
        "/etc/".into(),
        "/".into(),
        "etc/".into(),
        format!("{v}/escape/"),
        format!("{v}/escape/secret"),
        format!("{v}/sub/link/"),
        format!("{}/", other.display()),
        format!("{parent}/"),
        format!("{v}/*"),
        format!("{v}/../mount/"),
    ];
    in_parallel(&escapes, |path| refused_pull(path));
    // With the raw command too (what the rsync client would send).
    for path in [
        format!("{v}/escape/"),
        format!("{v}/sub/link/secret"),
        format!("{v}/."),
    ] {
        let out = reader.ssh(
            &reader.client_key,
            &[],
            Some(&format!("rsync --server --sender -logDtpre.iLsfxCIvu . {path}")),
        );
        assert_eq!(out.status.code(), Some(REFUSED), "{path}: {out:?}");
    }

    // A symlink inside the volume is copied as a symlink, never followed.
    let out = rsync_pull(&reader, &[], &format!("{v}/"), &dst);
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::symlink_metadata(dst.join("escape"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(dst.join("escape")).unwrap(), outside);
    let _ = std::fs::remove_dir_all(&dst);

    // A symlinked root: the allowed volume replaced by a symlink after it was allowed.
    let swapped = reader.volume("swapped");
    reader.allow("swapped", &swapped);
    std::fs::rename(&swapped, swapped.with_file_name("mount-real")).unwrap();
    std::os::unix::fs::symlink(&outside, &swapped).unwrap();
    refused_pull(&format!("{}/", swapped.display()));
    // A symlinked ancestor: the pod's directory replaced by a symlink to an identical copy.
    let anc = reader.volume("anc");
    std::fs::write(anc.join("data"), "x").unwrap();
    reader.allow("anc", &anc);
    let pod_dir = reader.kubelet.join("pods/anc-uid");
    std::fs::rename(&pod_dir, reader.kubelet.join("pods/anc-real")).unwrap();
    std::os::unix::fs::symlink("anc-real", &pod_dir).unwrap();
    refused_pull(&format!("{}/", anc.display()));
    let audit = reader.audit();
    assert!(audit.contains("symlink"), "{audit}");
    // An allow-list entry written by hand that names a path through a symlink, or outside the root.
    std::fs::write(
        reader.allow_dir.join("by-hand"),
        format!("{}\n", pod_dir.join("volumes").display()),
    )
    .unwrap();
    refused_pull(&format!("{}/", pod_dir.join("volumes").display()));
    std::fs::write(
        reader.allow_dir.join("beyond"),
        format!("{}\n", reader.state.path().display()),
    )
    .unwrap();
    refused_pull(&format!("{}/", reader.state.path().display()));

    // Allowed, then revoked: the next connection is refused.
    let out = rsync_pull(&reader, &[], &format!("{v}/data"), &dest.path().join("one"));
    assert!(out.status.success(), "{out:?}");
    reader.revoke("vol");
    let out = rsync_pull(&reader, &[], &format!("{v}/data"), &dest.path().join("two"));
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("not a volume served"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_rotation_does_not_break_a_running_transfer() {
    let (reader, vol) = reader_with_volume();
    std::fs::write(vol.join("big"), random_bytes(5, 32 << 20)).unwrap();
    let dest = TestDir::data("dest");
    let dst = dest.path().join("pvc");
    let old_key = reader.client_key.clone();
    let old = KeyPair::parse(&std::fs::read_to_string(&old_key).unwrap()).unwrap();
    let new = KeyPair::generate_ed25519("rotated").unwrap();
    let new_key = dest.path().join("new_key");
    std::fs::write(&new_key, new.private_key_openssh()).unwrap();
    std::fs::set_permissions(&new_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    // A slow transfer (2 MiB/s, about 16 s) logged in with the old key.
    let request = TransferRequest {
        source: DataSource::Ssh(reader.endpoint(&vol)),
        destination: dst.clone(),
        options: TransferOptions {
            bandwidth_limit_kib: Some(2048),
            retry: RetryPolicy::none(),
            ..Default::default()
        },
    };
    let moved = Arc::new(AtomicU64::new(0));
    let m = moved.clone();
    let transfer = tokio::spawn(async move {
        let progress = move |p: TransferProgress| m.store(p.bytes, Ordering::SeqCst);
        common::mover().transfer(&request, &progress).await
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while moved.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the transfer did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rotate: the old key expired, the new one accepted (as the operator's Secret update would).
    let rotate = |keys: AuthorizedClientKeys| {
        std::fs::remove_file(reader.authorized_dir.join("client.pub")).ok();
        std::fs::write(
            reader.authorized_dir.join("authorized_keys"),
            keys.to_authorized_keys(),
        )
        .unwrap();
        let generated = reader.state.path().join("state/authorized_keys");
        let want = keys.to_authorized_keys();
        // The expiry options too: two rotations can list the same keys with different expiries.
        let expiries = |text: &str| -> Vec<String> {
            let mut e: Vec<String> = text
                .split("expiry-time=\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next().map(str::to_owned))
                .collect();
            e.sort();
            e
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&generated).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            if lines.len() == want.lines().count()
                && keys.entries().iter().all(|e| text.contains(&e.key.to_openssh()))
                && expiries(&text) == expiries(&want)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the reader did not pick up the keys:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let past = SystemTime::now() - Duration::from_secs(3600);
    rotate(AuthorizedClientKeys::from_entries(vec![
        AuthorizedClientKey {
            key: old.public_key(),
            expires: Some(past),
        },
        AuthorizedClientKey {
            key: new.public_key(),
            expires: None,
        },
    ]));
    assert!(
        !transfer.is_finished(),
        "the transfer ended before the rotation took effect"
    );
    let out = reader.ssh(&old_key, &[], Some("dr-syncer-probe"));
    assert_eq!(out.status.code(), Some(255), "the old key still logs in: {out:?}");
    let out = reader.ssh(&new_key, &[], Some("dr-syncer-probe"));
    assert!(out.status.success(), "the new key is refused: {out:?}");

    // The transfer that logged in before the rotation completes.
    let stats = transfer
        .await
        .unwrap()
        .expect("the running transfer survives the rotation");
    assert_eq!(stats.attempts, 1);
    assert_eq!(
        std::fs::read(dst.join("big")).unwrap(),
        std::fs::read(vol.join("big")).unwrap()
    );

    // A grace window: the old key accepted again until its expiry.
    let mut keys = AuthorizedClientKeys::new([old.public_key()]);
    keys.rotate(new.public_key(), SystemTime::now() + Duration::from_secs(3600));
    rotate(keys);
    for key in [&old_key, &new_key] {
        let out = reader.ssh(key, &[], Some("dr-syncer-probe"));
        assert!(out.status.success(), "{}: {out:?}", key.display());
    }
}

/// A Secret (or projected token) volume granted by mistake or by a hostile grant is never served: the
/// pull is refused and nothing of it arrives, while a data volume of the same pod is served.
#[test]
fn credential_volumes_are_never_served() {
    let reader = Reader::start(ReaderOptions::default());
    let secret = reader
        .kubelet
        .join("pods/app-uid/volumes/kubernetes.io~secret/db-credentials");
    let token = reader
        .kubelet
        .join("pods/app-uid/volumes/kubernetes.io~projected/kube-api-access");
    for dir in [&secret, &token] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("token"), "s3cret-token\n").unwrap();
        reader.allow(dir.file_name().unwrap().to_str().unwrap(), dir);
    }
    let data = reader.volume("app");
    std::fs::write(data.join("rows"), "data\n").unwrap();
    reader.allow("data", &data);
    let dest = TestDir::data("stolen");
    for dir in [&secret, &token] {
        let path = format!("{}/", dir.canonicalize().unwrap().display());
        let out = rsync_pull(&reader, &[], &path, dest.path());
        assert!(!out.status.success(), "{path}: {out:?}");
        assert!(stderr(&out).contains("not a volume served"), "{out:?}");
    }
    assert!(
        std::fs::read_dir(dest.path()).unwrap().next().is_none(),
        "nothing of the credentials arrived"
    );
    let out = rsync_pull(&reader, &[], &format!("{}/", data.display()), dest.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("rows")).unwrap(),
        "data\n"
    );
}

/// Bind-mounts a directory on itself (as the kubelet mounts a volume) and unmounts it when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(dir: &Path) -> Self {
        let d = dir.display().to_string();
        let out = Command::new("mount").args(["--bind", &d, &d]).output().unwrap();
        assert!(out.status.success(), "mount {d}: {out:?}");
        Mounted(dir.into())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// A mover's key stolen from a DR namespace (its Secret exists for the transfer's lifetime) reads only
/// the volume of that transfer: not another transfer's volume on the same node (by grant name, by path,
/// by probe), not a Secret volume even when granted to it; the cluster's probe key reads nothing; a key
/// is refused from an address its grant does not name, and once its grant expires.
#[test]
fn a_stolen_transfer_key_reads_only_its_own_grant() {
    let reader = Reader::start(ReaderOptions {
        grants: true,
        ..Default::default()
    });
    let (a, b) = (reader.volume("app"), reader.volume("bank"));
    std::fs::write(a.join("data"), "app data\n").unwrap();
    std::fs::write(b.join("ledger"), "bank secret\n").unwrap();
    let creds = reader
        .kubelet
        .join("pods/app-uid/volumes/kubernetes.io~secret/creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("password"), "bank secret\n").unwrap();
    let _mounts: Vec<Mounted> = [&a, &b, &creds].into_iter().map(|d| Mounted::new(d)).collect();
    let valid = Duration::from_secs(600);
    let key_a = reader.grant_transfer("team-a.app", "app", &["127.0.0.1"], valid);
    let key_b = reader.grant_transfer("team-b.bank", "bank", &["127.0.0.1"], valid);
    // The Secret volume granted to key A as an ordinary grant would be (its volume name).
    let creds_grant = dr_syncer_core::pvc::TransferGrant {
        pod_uid: "app-uid".into(),
        volume: "creds".into(),
        host_path: None,
        binding: dr_syncer_core::pvc::KeyBinding {
            key: dr_syncer_core::keys::KeyPair::parse(&std::fs::read_to_string(&key_a).unwrap())
                .unwrap()
                .public_key(),
            not_after: SystemTime::now() + valid,
            from: vec!["127.0.0.1".into()],
        },
    };
    std::fs::write(reader.grants_dir.join("team-a.creds"), creds_grant.render()).unwrap();
    let elsewhere = reader.grant_transfer("team-c.far", "app", &["10.255.0.1"], valid);
    let brief = reader.grant_transfer("team-d.brief", "app", &["127.0.0.1"], Duration::from_secs(3));

    let dest = TestDir::data("stolen-key");
    let pull = |key: &Path, path: &str, into: &str| {
        let mut cmd = Command::new("rsync");
        cmd.arg("-a")
            .args(["-e", &reader.rsync_rsh(key)])
            .arg(format!("root@{}:{path}", reader.host))
            .arg(dest.path().join(into));
        run_with_timeout(&mut cmd, Duration::from_secs(60))
    };
    let leaked = || {
        let out = Command::new("grep")
            .args(["-r", "-l", "bank secret", &dest.path().display().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Positive control: once the agent has the grants, key A reads its volume.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = pull(&key_a, &format!("{}/", a.display()), "own");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "key A never read its volume: {out:?}\n{}",
            reader.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read_to_string(dest.path().join("own/data")).unwrap(),
        "app data\n"
    );

    // Key A (stolen from team-a's namespace) against team-b's volume, by every door.
    let b_path = format!("{}/", b.display());
    let out = pull(&key_a, &b_path, "by-path");
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("not a volume served"), "{out:?}");
    for command in [
        "dr-syncer-resolve team-b.bank".to_string(),
        format!("dr-syncer-probe {}", b.display()),
        format!("dr-syncer-usage {}", b.display()),
        format!("dr-syncer-checksum {}", b.display()),
    ] {
        let out = reader.ssh(&key_a, &[], Some(&command));
        assert_eq!(out.status.code(), Some(REFUSED), "{command}: {out:?}");
    }
    // The Secret volume granted to key A: never served.
    let out = pull(
        &key_a,
        &format!("{}/", creds.canonicalize().unwrap().display()),
        "creds",
    );
    assert!(!out.status.success(), "{out:?}");
    // The cluster's probe key: logs in, reads nothing.
    for (path, into) in [
        (format!("{}/", a.display()), "probe-a"),
        (b_path.clone(), "probe-b"),
    ] {
        let out = pull(&reader.client_key, &path, into);
        assert!(!out.status.success(), "{out:?}");
    }
    let out = reader.ssh(&reader.client_key, &[], Some("dr-syncer-probe"));
    assert!(out.status.success(), "probes still work: {out:?}");
    // A key whose grant names another address is refused at login (sshd's from=).
    let out = pull(&elsewhere, &format!("{}/", a.display()), "elsewhere");
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("Permission denied"), "{out:?}");
    // A key past its grant's expiry is refused at login.
    std::thread::sleep(Duration::from_secs(4));
    let out = pull(&brief, &format!("{}/", a.display()), "brief");
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("Permission denied"), "{out:?}");
    assert_eq!(leaked(), "", "nothing of team-b's volume or the Secret arrived");
    // Key B still reads its own volume: what was refused was the key, not the volume.
    let out = pull(&key_b, &b_path, "bank");
    assert!(out.status.success(), "{out:?}");
}

/// A client-named per-directory merge file (`dir-merge /leak.rules`) is looked for by rsync's sender in
/// every parent directory of the volume: a file outside the volume would steer (and, by its errors,
/// describe) what is served. The reader confines rsync to the volume (`--confine-root`, and refuses to
/// start without it unless told `--unconfined-rsync`): the file outside is not obeyed. Unconfined, the
/// same request obeys it — the attack is real.
#[test]
fn a_client_named_merge_file_outside_the_volume_is_not_obeyed() {
    let pull_with_rules = |reader: &Reader, vol: &Path, into: &str| {
        let dest = reader.state.path().join(into);
        let mut cmd = Command::new("rsync");
        cmd.arg("-a")
            .args(["-f", "dir-merge /leak.rules"])
            .args(["-e", &reader.rsync_rsh(&reader.client_key)])
            .arg(format!("root@{}:{}/", reader.host, vol.display()))
            .arg(&dest);
        (run_with_timeout(&mut cmd, Duration::from_secs(60)), dest)
    };
    let plant = |reader: &Reader| {
        let vol = reader.volume("vol");
        std::fs::write(vol.join("data"), "volume data\n").unwrap();
        std::fs::write(vol.join("other"), "more data\n").unwrap();
        reader.allow("vol", &vol);
        // Outside the volume, in a parent directory: a rule that hides `data`.
        std::fs::write(reader.kubelet.join("leak.rules"), "- data\n").unwrap();
        vol
    };

    let reader = Reader::start(ReaderOptions::default());
    let vol = plant(&reader);
    let (out, dest) = pull_with_rules(&reader, &vol, "confined");
    if out.status.success() {
        assert!(
            dest.join("data").exists(),
            "the rules outside the volume were obeyed: {out:?}"
        );
    } else {
        assert!(
            !dest.join("data").exists() && !dest.join("other").exists(),
            "{out:?}"
        );
    }
    assert!(!stderr(&out).contains("leak.rules line"), "{out:?}");

    let unconfined = Reader::start(ReaderOptions {
        extra_args: vec!["--unconfined-rsync".into()],
        ..Default::default()
    });
    let vol = plant(&unconfined);
    let (out, dest) = pull_with_rules(&unconfined, &vol, "unconfined");
    assert!(out.status.success(), "{out:?}");
    assert!(
        dest.join("other").exists() && !dest.join("data").exists(),
        "unconfined, the sender obeys the file outside the volume: {out:?}"
    );
}
