//! Harness of the data-path tests: a reader (`dr-syncer-agent serve` with a real sshd) in a private
//! directory, keys, the OpenSSH client, the mover, and network namespaces.
//!
//! The tests need root (sshd's privilege separation, chown of test files, network namespaces); CI runs
//! them as root. `DR_SYNCER_KEEP_TESTENV=1` keeps a test's directories (with the reader's log).

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of the harness.

pub mod tree;

use std::{
    io::Read,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use dr_syncer_core::{
    data::{DataMover, DataSource, RsyncSsh, SshEndpoint, TransferOptions, TransferRequest, TransferStats},
    keys::KeyPair,
};

/// The agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_dr-syncer-agent");

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for this test process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn require_root() {
    assert!(
        is_root(),
        "the data-path tests need root (sshd, chown, network namespaces); CI runs them as root"
    );
}

/// A directory removed when dropped (unless `DR_SYNCER_KEEP_TESTENV` is set).
pub struct TestDir(pub PathBuf);

impl TestDir {
    /// A new directory under `base`, mode 0755.
    pub fn new(base: &Path, name: &str) -> Self {
        let dir = base.join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    /// Data directories: on disk, under the build's temporary directory.
    pub fn data(name: &str) -> Self {
        Self::new(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
    }

    /// sshd's state: under /run (root-owned ancestors, as sshd's StrictModes demands).
    pub fn state(name: &str) -> Self {
        let base = Path::new("/run/dr-syncer-tests");
        std::fs::create_dir_all(base).unwrap();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self::new(base, name)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("DR_SYNCER_KEEP_TESTENV").is_some() {
            eprintln!("keeping {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_key(path: &Path, key: &KeyPair) {
    std::fs::write(path, key.private_key_openssh()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(path.with_extension("pub"), format!("{}\n", key.public_key())).unwrap();
}

/// How to start a reader.
#[derive(Default)]
pub struct ReaderOptions {
    /// Run inside this network namespace.
    pub netns: Option<String>,
    /// Listen address (default 127.0.0.1).
    pub listen: Option<String>,
    /// Port (default: a free one).
    pub port: Option<u16>,
    /// `--run-as UID:GID`.
    pub run_as: Option<(u32, u32)>,
    /// Serve the health endpoint (on a free loopback port).
    pub health: bool,
    /// Keep the allow-list from a grants directory (`Reader::grants_dir`).
    pub grants: bool,
    /// More arguments of `serve`.
    pub extra_args: Vec<String>,
}

/// A running reader and its keys.
pub struct Reader {
    pub state: TestDir,
    pub data: TestDir,
    pub host: String,
    pub port: u16,
    pub host_key: KeyPair,
    /// The client key the reader accepts.
    pub client_key: PathBuf,
    pub authorized_dir: PathBuf,
    pub allow_dir: PathBuf,
    /// The volume root (`--volume-root`): volumes are created below it.
    pub kubelet: PathBuf,
    /// `--grants-dir` (when `ReaderOptions::grants`).
    pub grants_dir: PathBuf,
    pub log: PathBuf,
    /// The health endpoint, when asked for.
    pub health: Option<std::net::SocketAddr>,
    child: Option<Child>,
}

impl Reader {
    pub fn start(opts: ReaderOptions) -> Reader {
        require_root();
        let state = TestDir::state("reader");
        let data = TestDir::data("data");
        let s = state.path();
        let host_keys = s.join("host-keys-secret");
        let authorized_dir = s.join("authorized-keys-secret");
        let client_dir = s.join("client");
        for d in [&host_keys, &authorized_dir, &client_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let host_key = KeyPair::generate_ed25519("test-reader").unwrap();
        write_key(&host_keys.join("ssh_host_ed25519_key"), &host_key);
        let client = KeyPair::generate_ed25519("test-mover").unwrap();
        let client_key = client_dir.join("id_ed25519");
        write_key(&client_key, &client);
        std::fs::write(
            authorized_dir.join("client.pub"),
            format!("{}\n", client.public_key()),
        )
        .unwrap();
        let kubelet = data.path().join("kubelet");
        std::fs::create_dir_all(&kubelet).unwrap();
        let host = opts.listen.unwrap_or_else(|| "127.0.0.1".into());
        let port = opts.port.unwrap_or_else(free_port);
        let log = s.join("reader.log");
        let allow_dir = s.join("allow");
        let health = opts
            .health
            .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], free_port())));

        let mut args: Vec<String> = vec![
            AGENT.into(),
            "serve".into(),
            "--port".into(),
            port.to_string(),
            "--listen-address".into(),
            host.clone(),
            "--state-dir".into(),
            s.join("state").display().to_string(),
            "--host-keys-dir".into(),
            host_keys.display().to_string(),
            "--authorized-keys-dir".into(),
            authorized_dir.display().to_string(),
            "--allow-dir".into(),
            allow_dir.display().to_string(),
            "--volume-root".into(),
            kubelet.display().to_string(),
            "--health-address".into(),
            health.map_or("off".into(), |a| a.to_string()),
            "--refresh-interval-ms".into(),
            "200".into(),
        ];
        if let Some((u, g)) = opts.run_as {
            args.extend(["--run-as".into(), format!("{u}:{g}")]);
        }
        args.extend(opts.extra_args.iter().cloned());
        let grants_dir = s.join("grants");
        if opts.grants {
            std::fs::create_dir_all(&grants_dir).unwrap();
            args.extend(["--grants-dir".into(), grants_dir.display().to_string()]);
        }
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(&args);
                c
            }
            None => {
                let mut c = Command::new(&args[0]);
                c.args(&args[1..]);
                c
            }
        };
        let logfile = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .env("RUST_LOG", "info")
            .process_group(0);
        let child = cmd.spawn().expect("start the reader");
        let mut reader = Reader {
            state,
            data,
            host,
            port,
            host_key,
            client_key,
            authorized_dir,
            allow_dir,
            kubelet,
            grants_dir,
            log,
            health,
            child: Some(child),
        };
        reader.wait_ready();
        reader
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("Server listening on") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the reader exited ({status}) before serving:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the reader did not start in 60 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The reader's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The forced command's audit log so far.
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.state.path().join("state/audit.log")).unwrap_or_default()
    }

    /// A new volume directory under the volume root, as the kubelet would mount it.
    pub fn volume(&self, name: &str) -> PathBuf {
        let path = self.kubelet.join(format!(
            "pods/{name}-uid/volumes/kubernetes.io~csi/pv-{name}/mount"
        ));
        std::fs::create_dir_all(&path).unwrap();
        path.canonicalize().unwrap()
    }

    pub fn allow(&self, name: &str, path: &Path) {
        dr_syncer_agent::allow::AllowList::new(&self.allow_dir)
            .grant(name, path)
            .unwrap();
    }

    pub fn revoke(&self, name: &str) {
        dr_syncer_agent::allow::AllowList::new(&self.allow_dir)
            .revoke(name)
            .unwrap();
    }

    /// Grant volume `name` (see [`Self::volume`]) as grant `grant` to a new transfer key, accepted from
    /// `from` until `valid` from now (as an orchestrator writes it into the grants ConfigMap): the
    /// key's private file.
    pub fn grant_transfer(&self, grant: &str, name: &str, from: &[&str], valid: Duration) -> PathBuf {
        let key = KeyPair::generate_ed25519(&format!("transfer-{grant}")).unwrap();
        let path = self.state.path().join(format!("transfer-{grant}.key"));
        write_key(&path, &key);
        let grant_value = dr_syncer_core::pvc::TransferGrant {
            pod_uid: format!("{name}-uid"),
            volume: format!("pv-{name}"),
            host_path: None,
            binding: dr_syncer_core::pvc::KeyBinding {
                key: key.public_key(),
                not_after: std::time::SystemTime::now() + valid,
                from: from.iter().map(|s| s.to_string()).collect(),
            },
        };
        std::fs::write(self.grants_dir.join(grant), grant_value.render()).unwrap();
        path
    }

    /// The pinned host key line.
    pub fn pin(&self) -> String {
        self.host_key.public_key().to_openssh()
    }

    /// An endpoint for the mover.
    pub fn endpoint(&self, volume: &Path) -> SshEndpoint {
        SshEndpoint {
            host: self.host.clone(),
            port: self.port,
            user: "root".into(),
            path: volume.display().to_string(),
            pinned_host_key: self.pin(),
            client_key: self.client_key.clone(),
        }
    }

    /// A known_hosts file with the reader's (current) host key. Written aside and renamed into place:
    /// clients running in parallel read it while another call rewrites it, and must never see it empty.
    pub fn known_hosts(&self) -> PathBuf {
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = self.state.path().join("known_hosts");
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.state.path().join(format!("known_hosts.{n}.tmp"));
        std::fs::write(&tmp, format!("[{}]:{} {}\n", self.host, self.port, self.pin())).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// OpenSSH client options for this reader (key, pinned known_hosts, no agent, no config).
    pub fn ssh_options(&self, key: &Path) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-i",
            &key.display().to_string(),
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Run the OpenSSH client against the reader: `ssh [extra...] root@host [command]`.
    pub fn ssh(&self, key: &Path, extra: &[&str], command: Option<&str>) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_options(key))
            .args(["-p", &self.port.to_string()])
            .args(extra)
            .arg(format!("root@{}", self.host));
        if let Some(c) = command {
            cmd.arg(c);
        }
        run_with_timeout(cmd.stdin(Stdio::null()), Duration::from_secs(60))
    }

    /// `ssh` as rsync's remote shell (`-e`), for a real rsync client.
    pub fn rsync_rsh(&self, key: &Path) -> String {
        let mut words = vec!["ssh".to_string()];
        words.extend(self.ssh_options(key));
        words.extend(["-p".into(), self.port.to_string()]);
        words.join(" ")
    }

    /// Pull with `RsyncSsh` (the library).
    pub async fn pull(
        &self,
        volume: &Path,
        dest: &Path,
        options: TransferOptions,
    ) -> Result<TransferStats, dr_syncer_core::data::DataMoverError> {
        let request = TransferRequest {
            source: DataSource::Ssh(self.endpoint(volume)),
            destination: dest.into(),
            options,
        };
        mover().transfer(&request, &|_| {}).await
    }
}

/// The mover as the agent's `mover` mode builds it.
pub fn mover() -> RsyncSsh {
    RsyncSsh::new(AGENT)
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- reader log ---\n{}\n--- audit ---\n{}",
                self.log_text(),
                self.audit()
            );
        }
    }
}

/// Run a command to the end, killing it after `timeout` (a correctness bound, not a measurement).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Run `f` on every item, four at a time (each check is mostly waiting for ssh and sshd to start).
pub fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    for chunk in items.chunks(4) {
        std::thread::scope(|s| {
            for item in chunk {
                s.spawn(|| f(item));
            }
        });
    }
}

/// A deterministic pseudo-random byte stream, for incompressible test files.
pub use dr_syncer_testenv::random_bytes;

/// Network namespaces joined by a veth pair, deleted when dropped (also when a test fails).
pub struct NetnsPair {
    pub source: String,
    pub dr: String,
    pub source_ip: String,
    pub dr_ip: String,
}

/// Whether this process has CAP_NET_ADMIN (bit 12 of the effective set).
pub fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetnsPair {
    /// Create `<name>s` (10.77.0.1/24) and `<name>d` (10.77.0.2/24) joined by a veth pair.
    pub fn create() -> NetnsPair {
        let id = unique("");
        // Interface names are at most 15 characters.
        let short: String = id
            .chars()
            .rev()
            .take(9)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        let pair = NetnsPair {
            source: format!("drs-src-{id}"),
            dr: format!("drs-dr-{id}"),
            source_ip: "10.77.0.1".into(),
            dr_ip: "10.77.0.2".into(),
        };
        ip(&["netns", "add", &pair.source]);
        ip(&["netns", "add", &pair.dr]);
        let (va, vb) = (format!("ds{short}"), format!("dd{short}"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &pair.source]);
        ip(&["link", "set", &vb, "netns", &pair.dr]);
        for (ns, dev, addr) in [
            (&pair.source, &va, "10.77.0.1/24"),
            (&pair.dr, &vb, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }
}

impl NetnsPair {
    /// Cut (`up` false) or restore the link between the two namespaces (the DR side's interfaces).
    pub fn link(&self, up: bool) {
        dr_syncer_testenv::kubelet::set_links(&self.dr, up).unwrap();
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.source, &self.dr] {
            // Processes still inside would keep the namespace's network alive: end them first.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
