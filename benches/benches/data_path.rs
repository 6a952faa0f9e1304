//! The PVC data path (`RsyncSsh` through the agent's forced command and SSH bridge) next to plain
//! `rsync -a -e ssh` of the same data, in the same run.
//!
//! How to run (as root: it starts sshd; takes a few minutes and about 3 GiB of disk):
//! ```text
//! cargo build --release -p dr-syncer-agent
//! cargo bench -p dr-syncer-benches --bench data_path
//! BENCH_REPEAT=3 cargo bench -p dr-syncer-benches --bench data_path   # best of 3 per line
//! ```
//! A 1 GiB tree of random data (1 × 256 MiB, 8 × 32 MiB, 256 × 1 MiB, 4,096 × 64 KiB) is served by
//! `dr-syncer-agent serve` (our sshd configuration and forced command) and by a plain sshd on another
//! port, both on loopback. Lines:
//! - `first copy`: the whole tree into an empty directory, ours and plain (target: ours ≤ 1.2× plain);
//! - `1% resync`: after about 1 % of the bytes changed (regions of the large files, whole small files),
//!   ours and plain (targets: bytes sent ≤ 1.1× the changed bytes; time ≤ 1.2× plain).
//!
//! Results are in docs/benchmarks.md.

use std::{
    io::{Seek, SeekFrom, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dr_syncer_core::{
    data::{
        DataMover, DataSource, RetryPolicy, RsyncSsh, SshEndpoint, TransferOptions, TransferRequest,
        progress::RsyncStats,
    },
    keys::KeyPair,
};
use dr_syncer_testenv::random_bytes;

const MIB: u64 = 1 << 20;

/// The 1 GiB tree; the number of files.
fn build_tree(root: &Path) -> usize {
    let mut n = 0;
    let mut write = |rel: String, size: u64, seed: u64| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, random_bytes(seed, size as usize)).unwrap();
        n += 1;
    };
    write("db/huge.bin".into(), 256 * MIB, 1);
    for i in 0..8 {
        write(format!("media/large-{i}.bin"), 32 * MIB, 10 + i);
    }
    for i in 0..256 {
        write(format!("docs/d{:02}/file-{i:03}.bin", i % 16), MIB, 100 + i);
    }
    for i in 0..4096 {
        write(format!("small/s{:02}/f{i:04}.bin", i % 64), 64 * 1024, 1000 + i);
    }
    n
}

/// Change about 1 % of the tree's bytes (new content from `round`); the number of bytes changed.
fn change_one_percent(root: &Path, round: u64) -> u64 {
    let mut changed = 0;
    let mut overwrite = |rel: &str, offset: u64, len: u64, seed: u64| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(root.join(rel))
            .unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&random_bytes(seed + round * 100_000, len as usize))
            .unwrap();
        changed += len;
    };
    overwrite("db/huge.bin", 40 * MIB, 2 * MIB, 5001);
    overwrite("db/huge.bin", 200 * MIB, 2 * MIB, 5002);
    overwrite("media/large-2.bin", 10 * MIB, MIB, 5003);
    overwrite("media/large-5.bin", 20 * MIB, MIB, 5004);
    for i in [7u64, 133] {
        overwrite(&format!("docs/d{:02}/file-{i:03}.bin", i % 16), 0, MIB, 6000 + i);
    }
    for i in 0..40u64 {
        let i = i * 100 + 3;
        overwrite(
            &format!("small/s{:02}/f{i:04}.bin", i % 64),
            0,
            64 * 1024,
            7000 + i,
        );
    }
    changed
}

struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_ssh(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd on port {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

struct Setup {
    agent: PathBuf,
    pin: String,
    key: PathBuf,
    ours_port: u16,
    plain_rsh: String,
    _servers: Vec<Killer>,
}

fn start_servers(state: &Path, volume_root: &Path, volume: &Path) -> Setup {
    let agent = match std::env::var_os("DR_SYNCER_AGENT_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("dr-syncer-agent"),
    };
    assert!(
        agent.is_file(),
        "{} is missing: run `cargo build --release -p dr-syncer-agent` first",
        agent.display()
    );
    let host = KeyPair::generate_ed25519("bench-reader").unwrap();
    let client = KeyPair::generate_ed25519("bench-mover").unwrap();
    for d in ["host-keys", "authorized-keys"] {
        std::fs::create_dir_all(state.join(d)).unwrap();
    }
    write_private(
        &state.join("host-keys/ssh_host_ed25519_key"),
        &host.private_key_openssh(),
    );
    std::fs::write(
        state.join("authorized-keys/mover.pub"),
        format!("{}\n", client.public_key()),
    )
    .unwrap();
    let key = state.join("id_ed25519");
    write_private(&key, &client.private_key_openssh());

    // Ours: the agent's sshd and forced command.
    let ours_port = free_port();
    let log = std::fs::File::create(state.join("agent.log")).unwrap();
    let ours = Command::new(&agent)
        .args([
            "serve",
            "--port",
            &ours_port.to_string(),
            "--listen-address",
            "127.0.0.1",
        ])
        .arg("--state-dir")
        .arg(state.join("agent"))
        .arg("--host-keys-dir")
        .arg(state.join("host-keys"))
        .arg("--authorized-keys-dir")
        .arg(state.join("authorized-keys"))
        .arg("--allow-dir")
        .arg(state.join("allow"))
        .arg("--volume-root")
        .arg(volume_root)
        .args(["--health-address", "off"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let ours = Killer(ours);
    let grant = Command::new(&agent)
        .arg("allow")
        .arg("--allow-dir")
        .arg(state.join("allow"))
        .args(["--name", "bench", "--path"])
        .arg(volume)
        .output()
        .unwrap();
    assert!(grant.status.success(), "{grant:?}");

    // Plain: a stock sshd configuration with the same host key and a plain authorized_keys file.
    let plain_port = free_port();
    write_private(
        &state.join("plain_authorized_keys"),
        &format!("{}\n", client.public_key()),
    );
    let config = format!(
        "Port {plain_port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
         PermitRootLogin prohibit-password\n",
        state.join("host-keys/ssh_host_ed25519_key").display(),
        state.join("plain_authorized_keys").display()
    );
    write_private(&state.join("plain_sshd_config"), &config);
    if !Path::new("/run/sshd").is_dir() {
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let plain = Killer(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(state.join("plain_sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_ssh(ours_port);
    wait_for_ssh(plain_port);
    let known = state.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{plain_port} {}\n", host.public_key()),
    )
    .unwrap();
    let plain_rsh = format!(
        "ssh -F /dev/null -i {} -p {plain_port} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        key.display(),
        known.display()
    );
    Setup {
        agent,
        pin: host.public_key().to_openssh(),
        key,
        ours_port,
        plain_rsh,
        _servers: vec![ours, plain],
    }
}

/// One measured run: seconds and the bytes the reader sent.
struct Run {
    secs: f64,
    bytes_sent: u64,
}

fn plain(setup: &Setup, volume: &Path, dest: &Path) -> Run {
    let start = Instant::now();
    let out = Command::new("rsync")
        .args(["-a", "--stats", "-e", &setup.plain_rsh])
        .arg(format!("root@127.0.0.1:{}/", volume.display()))
        .arg(format!("{}/", dest.display()))
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "plain rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = RsyncStats::parse(text.lines());
    Run {
        secs,
        bytes_sent: stats.bytes_received.unwrap_or(0),
    }
}

fn ours(setup: &Setup, rt: &tokio::runtime::Runtime, volume: &Path, dest: &Path) -> Run {
    let request = TransferRequest {
        source: DataSource::Ssh(SshEndpoint {
            host: "127.0.0.1".into(),
            port: setup.ours_port,
            user: "root".into(),
            path: volume.display().to_string(),
            pinned_host_key: setup.pin.clone(),
            client_key: setup.key.clone(),
        }),
        destination: dest.into(),
        options: TransferOptions {
            retry: RetryPolicy::none(),
            ..Default::default()
        },
    };
    let mover = RsyncSsh::new(&setup.agent);
    let start = Instant::now();
    let stats = rt
        .block_on(mover.transfer(&request, &|_| {}))
        .expect("RsyncSsh transfer");
    Run {
        secs: start.elapsed().as_secs_f64(),
        bytes_sent: stats.bytes_sent,
    }
}

fn best(runs: impl IntoIterator<Item = Run>) -> Run {
    runs.into_iter().min_by(|a, b| a.secs.total_cmp(&b.secs)).unwrap()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`: nothing to list.
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this benchmark starts sshd: run it as root"
    );
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let base =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("data-path-bench-{}", std::process::id()));
    let state = PathBuf::from(format!("/run/dr-syncer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let volume_root = base.join("kubelet");
    let volume = volume_root.join("pods/bench/volumes/kubernetes.io~csi/pv-bench/mount");
    std::fs::create_dir_all(&volume).unwrap();
    let volume = volume.canonicalize().unwrap();
    let (dest_ours, dest_plain) = (base.join("dest-ours"), base.join("dest-plain"));

    let t = Instant::now();
    let files = build_tree(&volume);
    eprintln!(
        "built the tree ({files} files) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let setup = start_servers(&state, &volume_root, &volume);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let total = 1024 * MIB;

    let mut first_plain = Vec::new();
    let mut first_ours = Vec::new();
    for _ in 0..repeat {
        for d in [&dest_ours, &dest_plain] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).unwrap();
        }
        first_plain.push(plain(&setup, &volume, &dest_plain));
        first_ours.push(ours(&setup, &rt, &volume, &dest_ours));
    }
    let (fp, fo) = (best(first_plain), best(first_ours));

    // Each round changes another 1 % (new content in the same places) and resyncs both copies.
    let (mut resync_plain, mut resync_ours, mut changed) = (Vec::new(), Vec::new(), 0);
    for round in 0..repeat as u64 {
        changed = change_one_percent(&volume, round);
        resync_plain.push(plain(&setup, &volume, &dest_plain));
        resync_ours.push(ours(&setup, &rt, &volume, &dest_ours));
    }
    let (rp, ro) = (best(resync_plain), best(resync_ours));

    let rate = |r: &Run, bytes: u64| bytes as f64 / r.secs / MIB as f64;
    println!("\n== PVC data path: 1 GiB tree ({files} files), loopback, same run ==");
    println!(
        "first copy  plain rsync -a -e ssh   {:7.2} s {:7.1} MiB/s  sent {:>13} B",
        fp.secs,
        rate(&fp, total),
        fp.bytes_sent
    );
    println!(
        "first copy  dr-syncer RsyncSsh      {:7.2} s {:7.1} MiB/s  sent {:>13} B  time <= 1.2x plain ({:.2} s) {}",
        fo.secs,
        rate(&fo, total),
        fo.bytes_sent,
        1.2 * fp.secs,
        verdict(fo.secs <= 1.2 * fp.secs)
    );
    println!(
        "1% resync   plain rsync -a -e ssh   {:7.2} s                sent {:>13} B  changed {changed} B",
        rp.secs, rp.bytes_sent
    );
    println!(
        "1% resync   dr-syncer RsyncSsh      {:7.2} s                sent {:>13} B  bytes <= 1.1x changed ({:.0}) {}  time <= 1.2x plain ({:.2} s) {}",
        ro.secs,
        ro.bytes_sent,
        1.1 * changed as f64,
        verdict(ro.bytes_sent as f64 <= 1.1 * changed as f64),
        1.2 * rp.secs,
        verdict(ro.secs <= 1.2 * rp.secs)
    );
    drop(setup);
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&state);
}
