//! `dr-syncer-agent serve`: the reader. Runs OpenSSH's sshd with a generated configuration in which
//! every login runs the forced command ([`crate::command`]), keeps its host keys and authorized keys in
//! step with the mounted Secrets, relays the forced command's audit log, and answers health probes.
//!
//! sshd is strict about its files (owned by root or the running user, not writable by others, private
//! keys readable only by their owner); Secret volumes are mounted with other modes, so the agent copies
//! what sshd reads into its own state directory with the modes sshd wants, and checks that directory's
//! ancestors before sshd would silently refuse them.

use std::{
    net::{SocketAddr, ToSocketAddrs},
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::{Context, bail};
use dr_syncer_core::keys::KeyPair;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt};
use tracing::{error, info, warn};

use crate::command::parse_run_as;

pub mod config;
pub mod health;

use config::{SshdSettings, shell_word};

/// Settings of the reader.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Port sshd listens on.
    #[arg(long, default_value_t = 2222)]
    pub port: u16,
    /// Address sshd listens on (repeatable).
    #[arg(long = "listen-address", default_value = "0.0.0.0")]
    pub listen: Vec<String>,
    /// OpenSSH server binary.
    #[arg(long, default_value = "/usr/sbin/sshd")]
    pub sshd: PathBuf,
    /// rsync binary.
    #[arg(long, default_value = "/usr/bin/rsync")]
    pub rsync: PathBuf,
    /// Private directory for the generated sshd configuration, keys and audit log.
    #[arg(long, default_value = "/run/dr-syncer-agent")]
    pub state_dir: PathBuf,
    /// Directory with the host keys (`ssh_host_*_key` files; the mounted host-keys Secret).
    #[arg(long, default_value = "/etc/dr-syncer/host-keys")]
    pub host_keys_dir: PathBuf,
    /// Directory with the accepted client keys (`*.pub` and authorized_keys files; the mounted Secret).
    #[arg(long, default_value = "/etc/dr-syncer/authorized-keys")]
    pub authorized_keys_dir: PathBuf,
    /// Directory of allowed volumes (see the allow-list format).
    #[arg(long, default_value = "/run/dr-syncer-agent/allow")]
    pub allow_dir: PathBuf,
    /// Only volumes under this directory are ever served (the kubelet root), and hostPath volumes below
    /// the `--host-path-mount` directories.
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub volume_root: PathBuf,
    /// This node's name: hostPath grants name the node that holds the directory.
    #[arg(long, env = "DR_SYNCER_NODE_NAME")]
    pub node_name: Option<String>,
    /// A node directory below which hostPath PersistentVolumes are served (repeatable; paired in order
    /// with `--host-path-mount`). Never `/`, a system directory or the kubelet root.
    #[arg(long = "host-path-prefix")]
    pub host_path_prefixes: Vec<String>,
    /// Where the `--host-path-prefix` of the same position is mounted in this container.
    #[arg(long = "host-path-mount")]
    pub host_path_mounts: Vec<PathBuf>,
    /// Directory of grants (the mounted `dr-syncer-agent-grants` ConfigMap): the agent then keeps the
    /// allow-list equal to the grants that resolve on this node (see the grants format).
    #[arg(long)]
    pub grants_dir: Option<PathBuf>,
    /// Address of the health endpoint (`/healthz`, `/readyz`), or `off`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub health_address: String,
    /// The only user that may log in (the forced command and rsync run as this user).
    #[arg(long, default_value = "root")]
    pub login_user: String,
    /// Run rsync as this `UID:GID` instead of the login user.
    #[arg(long, value_parser = parse_run_as)]
    pub run_as: Option<(u32, u32)>,
    /// How often the key directories are re-read, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub refresh_interval_ms: u64,
    /// Binary of the forced command (default: this executable).
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
    /// Extra sshd configuration line (`Keyword value`; repeatable).
    #[arg(long = "sshd-option")]
    pub sshd_options: Vec<String>,
    /// Serve without rsync's `--confine-root` (needed when the installed rsync lacks it). A client can
    /// then make the sender read filter merge files outside the volume (per-directory merge files are
    /// looked for in every parent directory of the volume): use only with an rsync that cannot be
    /// upgraded, or in tests.
    #[arg(long)]
    pub unconfined_rsync: bool,
}

/// Files of the state directory.
struct State {
    dir: PathBuf,
    config: PathBuf,
    authorized_keys: PathBuf,
    host_keys_dir: PathBuf,
    audit_log: PathBuf,
}

impl State {
    fn new(dir: &Path) -> Self {
        State {
            dir: dir.into(),
            config: dir.join("sshd_config"),
            authorized_keys: dir.join("authorized_keys"),
            host_keys_dir: dir.join("host-keys"),
            audit_log: dir.join("audit.log"),
        }
    }
}

/// Write `text` to `path` with `mode`, atomically; whether the content changed.
fn write_private(path: &Path, text: &str, mode: u32) -> anyhow::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    Ok(true)
}

/// sshd refuses files in directories that others can write: check before it does, with a clear message.
fn check_safe_path(path: &Path) -> anyhow::Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let canonical = std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
    let mut dir = Some(canonical.as_path());
    while let Some(d) = dir {
        let m = std::fs::metadata(d).with_context(|| format!("reading {}", d.display()))?;
        if (m.uid() != 0 && m.uid() != euid) || m.mode() & 0o022 != 0 {
            bail!(
                "{} is owned by uid {} with mode {:o}; sshd refuses files below a directory that is not owned by \
                 root or the agent's user, or that others can write: choose another --state-dir",
                d.display(),
                m.uid(),
                m.mode() & 0o7777
            );
        }
        dir = d.parent();
    }
    Ok(())
}

/// Copy the host keys of the mounted Secret into the state directory (mode 0600, OpenSSH format).
fn install_host_keys(from: &Path, state: &State) -> anyhow::Result<(Vec<PathBuf>, bool)> {
    let mut names: Vec<String> = std::fs::read_dir(from)
        .with_context(|| format!("reading host keys from {}", from.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        .collect();
    names.sort();
    let mut paths = Vec::new();
    let mut changed = false;
    for name in names {
        let text = std::fs::read_to_string(from.join(&name))
            .with_context(|| format!("reading {}", from.join(&name).display()))?;
        let key = KeyPair::parse(&text).with_context(|| format!("host key {name}"))?;
        let path = state.host_keys_dir.join(&name);
        changed |= write_private(&path, &key.private_key_openssh(), 0o600)?;
        paths.push(path);
    }
    if paths.is_empty() {
        bail!("no host key (ssh_host_*_key) in {}", from.display());
    }
    Ok((paths, changed))
}

/// Regenerate the authorized_keys file from the mounted directory (probe keys) and the transfer keys of
/// the unexpired grants — every grant's, also those whose volume is elsewhere, so that a mover at the
/// wrong node is told why by the forced command instead of being turned away at login — and of bound
/// allow-list entries; whether it changed.
fn install_authorized_keys(args: &ServeArgs, state: &State, forced: &str) -> anyhow::Result<bool> {
    let (keys, problems) = config::read_client_keys(&args.authorized_keys_dir);
    for p in problems {
        warn!("client keys: {p}");
    }
    let now = std::time::SystemTime::now();
    let granted = match &args.grants_dir {
        Some(dir) => crate::grants::read_grants(dir)
            .with_context(|| format!("reading grants in {}", dir.display()))?
            .0
            .into_iter()
            .map(|g| g.grant.binding)
            .collect(),
        None => Vec::new(),
    };
    let mut transfers: Vec<_> = crate::allow::AllowList::new(&args.allow_dir)
        .entries()
        .map_err(|e| anyhow::anyhow!("reading the allow-list: {e}"))?
        .into_iter()
        .filter_map(|e| e.binding)
        .chain(granted)
        .filter(|b| b.not_after > now)
        .collect();
    transfers.sort_by_key(|b| b.key.blob());
    transfers.dedup_by(|a, b| a.key.blob() == b.key.blob());
    let changed = write_private(
        &state.authorized_keys,
        &config::authorized_keys(&keys, &transfers, forced),
        0o600,
    )?;
    if changed {
        let fingerprints: Vec<String> = keys.entries().iter().map(|e| e.key.fingerprint()).collect();
        let transfer_keys: Vec<String> = transfers.iter().map(|b| b.key.fingerprint()).collect();
        info!(keys = ?fingerprints, transfers = ?transfer_keys, "authorized client keys updated");
    }
    Ok(changed)
}

/// The forced command line written into the configuration.
fn forced_command(args: &ServeArgs, state: &State, confine: bool) -> anyhow::Result<String> {
    let agent = match &args.agent_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating the agent binary")?,
    };
    let agent = std::fs::canonicalize(&agent).with_context(|| format!("resolving {}", agent.display()))?;
    let mut words: Vec<String> = vec![
        agent.to_string_lossy().into_owned(),
        "ssh-command".into(),
        "--allow-dir".into(),
        args.allow_dir.to_string_lossy().into_owned(),
        "--volume-root".into(),
        args.volume_root.to_string_lossy().into_owned(),
        "--rsync".into(),
        args.rsync.to_string_lossy().into_owned(),
        "--audit-log".into(),
        state.audit_log.to_string_lossy().into_owned(),
    ];
    for mount in &args.host_path_mounts {
        words.extend(["--host-path-root".into(), mount.to_string_lossy().into_owned()]);
    }
    if confine {
        words.push("--confine-root".into());
    }
    if args.grants_dir.is_some() {
        // The allow-list is the agent's own, made from grants: every entry has a transfer's key.
        words.push("--require-binding".into());
    }
    if let Some((u, g)) = args.run_as {
        words.extend(["--run-as".into(), format!("{u}:{g}")]);
    }
    let quoted: Result<Vec<String>, String> = words.iter().map(|w| shell_word(w)).collect();
    Ok(quoted.map_err(anyhow::Error::msg)?.join(" "))
}

/// Create and remove a file in the temporary directory.
fn tempfile_in_tmp() -> std::io::Result<()> {
    let path = std::env::temp_dir().join(format!(".dr-syncer-agent-{}", std::process::id()));
    std::fs::write(&path, b"")?;
    std::fs::remove_file(&path)
}

/// Whether the installed rsync has `--confine-root`.
async fn rsync_can_confine(rsync: &Path) -> bool {
    let out = tokio::process::Command::new(rsync).arg("--help").output().await;
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--confine-root"))
}

fn settings(args: &ServeArgs, state: &State, host_keys: Vec<PathBuf>, forced: String) -> SshdSettings {
    SshdSettings {
        port: args.port,
        listen: args.listen.clone(),
        host_keys,
        authorized_keys: state.authorized_keys.clone(),
        login_user: args.login_user.clone(),
        forced_command: forced,
        extra: args.sshd_options.clone(),
    }
}

/// Run the reader until SIGTERM or SIGINT (then sshd is stopped too) or until sshd dies (an error).
///
/// # Errors
/// Setup problems (keys, directories, an sshd that refuses the configuration) and sshd exiting.
pub async fn run(mut args: ServeArgs) -> anyhow::Result<()> {
    // The forced command runs in the login user's home directory: every path it gets is absolute.
    for path in [
        &mut args.state_dir,
        &mut args.allow_dir,
        &mut args.volume_root,
        &mut args.host_keys_dir,
        &mut args.authorized_keys_dir,
    ] {
        *path = std::path::absolute(&*path).with_context(|| format!("resolving {}", path.display()))?;
    }
    for mount in &mut args.host_path_mounts {
        *mount = std::path::absolute(&*mount).with_context(|| format!("resolving {}", mount.display()))?;
    }
    crate::kubelet::HostPaths::new(
        args.node_name.clone(),
        &args.host_path_prefixes,
        &args.host_path_mounts,
        &args.volume_root,
        &[&args.allow_dir, &args.state_dir],
    )
    .map_err(anyhow::Error::msg)?;
    if args.rsync.components().count() > 1 {
        args.rsync = std::path::absolute(&args.rsync)?;
    }
    let state = State::new(&args.state_dir);
    for dir in [&state.dir, &state.host_keys_dir, &args.allow_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::set_permissions(&state.dir, std::fs::Permissions::from_mode(0o700))?;
    check_safe_path(&state.dir)?;
    if nix::unistd::geteuid().is_root() && !Path::new("/run/sshd").is_dir() {
        // sshd's privilege separation directory.
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create("/run/sshd")
            .context("creating /run/sshd")?;
    }
    shell_word(&args.login_user).map_err(|e| anyhow::anyhow!("--login-user: {e}"))?;
    // sshd writes the ExposeAuthInfo file (which key logged in) to /tmp; without it no transfer's key
    // is recognised and every copy is refused.
    tempfile_in_tmp().context(
        "the temporary directory is not writable: sshd could not tell the forced command which key logged in \
         (mount an emptyDir at /tmp; the agent DaemonSet does)",
    )?;
    let confine = !args.unconfined_rsync;
    if confine && !rsync_can_confine(&args.rsync).await {
        bail!(
            "{} has no --confine-root (rsync < 3.5.0): a client could make it read filter merge files outside \
             the volume. Install an rsync with --confine-root (the agent image has one), or pass \
             --unconfined-rsync to accept the risk",
            args.rsync.display()
        );
    }
    if !confine {
        warn!(
            "serving without --confine-root: filter merge files named by a client are not confined to the volume"
        );
    }
    let forced = forced_command(&args, &state, confine)?;
    let (host_keys, _) = install_host_keys(&args.host_keys_dir, &state)?;
    let mut grant_problems = Vec::new();
    if let Some(dir) = &args.grants_dir {
        sync_grants(dir, &args, &mut grant_problems);
    }
    install_authorized_keys(&args, &state, &forced)?;
    write_private(
        &state.config,
        &config::sshd_config(&settings(&args, &state, host_keys.clone(), forced.clone())),
        0o600,
    )?;
    // A mover retries while its transfer's key is on its way to this agent, and several movers share
    // a DR node's address: OpenSSH ≥ 9.8 would penalise that address for the failed logins. (Keys
    // are not guessable; MaxStartups still bounds unauthenticated connections.)
    let penalties = tokio::process::Command::new(&args.sshd)
        .args(["-t", "-o", "PerSourcePenalties=no", "-f"])
        .arg(&state.config)
        .output()
        .await;
    if penalties.is_ok_and(|o| o.status.success()) {
        args.sshd_options.push("PerSourcePenalties no".into());
        write_private(
            &state.config,
            &config::sshd_config(&settings(&args, &state, host_keys.clone(), forced.clone())),
            0o600,
        )?;
    }
    let test = tokio::process::Command::new(&args.sshd)
        .args(["-t", "-f"])
        .arg(&state.config)
        .output()
        .await
        .with_context(|| format!("running {}", args.sshd.display()))?;
    if !test.status.success() {
        bail!(
            "sshd refuses the generated configuration {}: {}",
            state.config.display(),
            String::from_utf8_lossy(&test.stderr).trim()
        );
    }

    let mut sshd = tokio::process::Command::new(&args.sshd)
        .args(["-D", "-e", "-f"])
        .arg(&state.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.sshd.display()))?;
    if let Some(err) = sshd.stderr.take() {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                info!(target: "sshd", "{line}");
            }
        });
    }
    let alive = Arc::new(AtomicBool::new(true));
    let _health = start_health(&args, alive.clone()).await?;
    info!(port = args.port, listen = ?args.listen, confine, "reader serving");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(args.refresh_interval_ms.max(100)));
    let mut audit_offset = 0u64;
    loop {
        tokio::select! {
            status = sshd.wait() => {
                alive.store(false, std::sync::atomic::Ordering::SeqCst);
                bail!("sshd exited: {status:?}");
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => {
                // Grants first: a new transfer's key is accepted in the same pass.
                if let Some(dir) = &args.grants_dir {
                    sync_grants(dir, &args, &mut grant_problems);
                }
                if let Err(e) = refresh(&args, &state, &forced, &sshd).await {
                    error!("refreshing keys: {e:#}");
                }
                audit_offset = relay_audit(&state.audit_log, audit_offset).await;
            }
        }
    }
    info!("stopping sshd");
    if let Some(pid) = sshd.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), sshd.wait()).await;
    Ok(())
}

/// Re-read the key directories; on a host key change, rewrite the configuration and make sshd reload.
async fn refresh(
    args: &ServeArgs,
    state: &State,
    forced: &str,
    sshd: &tokio::process::Child,
) -> anyhow::Result<()> {
    install_authorized_keys(args, state, forced)?;
    let (host_keys, changed) = install_host_keys(&args.host_keys_dir, state)?;
    let config_changed = write_private(
        &state.config,
        &config::sshd_config(&settings(args, state, host_keys, forced.into())),
        0o600,
    )?;
    if (changed || config_changed)
        && let Some(pid) = sshd.id()
    {
        info!("host keys changed; sshd reloads (running sessions continue)");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )?;
    }
    Ok(())
}

/// Keep the allow-list equal to the grants resolved on this node; problems are logged when they change.
fn sync_grants(dir: &Path, args: &ServeArgs, last_problems: &mut Vec<String>) {
    let allow = crate::allow::AllowList::new(&args.allow_dir);
    let host_paths = match crate::kubelet::HostPaths::new(
        args.node_name.clone(),
        &args.host_path_prefixes,
        &args.host_path_mounts,
        &args.volume_root,
        &[&args.allow_dir, &args.state_dir],
    ) {
        Ok(h) => h,
        Err(e) => {
            warn!("hostPath prefixes: {e}; no hostPath volume is served");
            crate::kubelet::HostPaths::default()
        }
    };
    match crate::grants::sync(dir, &allow, &args.volume_root, &host_paths) {
        Ok(done) => {
            for (name, path) in &done.allowed {
                info!(grant = %name, path = %path.display(), "volume allowed");
            }
            for name in &done.revoked {
                info!(grant = %name, "volume no longer allowed");
            }
            let mut problems = done.problems;
            problems.extend(done.unmounted.iter().map(|n| {
                format!(
                    "grant {n}: the volume's directory is not a mount point here (not mounted yet, or the mount \
                     is not visible to the agent: its kubelet volume needs mountPropagation HostToContainer); \
                     not served"
                )
            }));
            if problems != *last_problems {
                for p in &problems {
                    warn!("{p}");
                }
                *last_problems = problems;
            }
        }
        Err(e) => error!("applying grants: {e}"),
    }
}

/// Log the audit lines written since `offset`; the new offset.
async fn relay_audit(path: &Path, offset: u64) -> u64 {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return offset;
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = if len < offset { 0 } else { offset };
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return offset;
    }
    let mut text = String::new();
    if file.read_to_string(&mut text).await.is_err() {
        return offset;
    }
    // Only whole lines; a line being written is read next time.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    for line in text[..whole].lines() {
        info!(target: "audit", "{line}");
    }
    start + whole as u64
}

async fn start_health(
    args: &ServeArgs,
    alive: Arc<AtomicBool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if args.health_address == "off" {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&args.health_address)
        .await
        .with_context(|| format!("binding the health endpoint {}", args.health_address))?;
    let host = match args.listen.first().map(String::as_str) {
        None | Some("0.0.0.0") | Some("::") => "127.0.0.1",
        Some(h) => h,
    };
    let address: SocketAddr = (host, args.port)
        .to_socket_addrs()?
        .next()
        .context("resolving the listen address")?;
    info!(address = %listener.local_addr()?, "health endpoint");
    Ok(Some(tokio::spawn(health::serve(
        listener,
        health::SshCheck { address, alive },
    ))))
}
