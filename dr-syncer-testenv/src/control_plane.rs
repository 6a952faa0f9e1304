//! Starting, using and stopping one `kapi` test control plane.

use std::{
    fmt,
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use nix::{sys::signal, unistd::Pid};
use serde::Deserialize;
use tempfile::TempDir;

use crate::{Error, Result, binaries};

/// How long a control plane may take to become ready before [`ControlPlaneBuilder::start`] gives up.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopping control plane gets after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What `kapi serve` writes into its state directory once it is ready.
#[derive(Debug, Deserialize)]
struct ReadyFile {
    url: String,
    port: u16,
}

/// Options for a control plane; obtain with [`ControlPlane::builder`].
#[derive(Debug, Clone)]
pub struct ControlPlaneBuilder {
    name: String,
    simulate_workloads: bool,
    rbac: bool,
    deny: Vec<String>,
    port: Option<u16>,
    start_timeout: Duration,
    extra_args: Vec<String>,
    kapi: Option<PathBuf>,
}

impl ControlPlaneBuilder {
    /// Use this kapi binary instead of the one found by [`crate::kapi_path`].
    pub fn kapi_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.kapi = Some(path.into());
        self
    }

    /// Simulate workload controllers: Deployments, StatefulSets, DaemonSets and ReplicaSets report
    /// themselves rolled out and ready (`kapi serve --simulate-workloads`).
    pub fn simulate_workloads(mut self, on: bool) -> Self {
        self.simulate_workloads = on;
        self
    }

    /// Enforce RBAC (`kapi serve --authorization-mode RBAC`): a request is allowed for group
    /// `system:masters` (the admin client, and [`ControlPlane::identity`]) or when a Role/ClusterRole bound
    /// to the user, one of its groups or its ServiceAccount grants it; the deny list still applies on top.
    /// Create identities with [`ControlPlane::identity_in_groups`] (or tokens with
    /// [`ControlPlane::mint_token`]) to be subject to RBAC. Off by default (everything is allowed except the
    /// deny list).
    pub fn rbac(mut self, on: bool) -> Self {
        self.rbac = on;
        self
    }

    /// Refuse `verbs` on `resources` (`resource` or `resource.group`) for client `user` from the start
    /// (`kapi serve --deny user:verbs:resources`). Rules can also be added at run time with
    /// [`ControlPlane::deny`].
    pub fn deny(mut self, user: &str, verbs: &[&str], resources: &[&str]) -> Self {
        self.deny
            .push(format!("{user}:{}:{}", verbs.join(","), resources.join(",")));
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Give up when the server is not ready after this long.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Pass further arguments to `kapi serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Start the control plane and wait until it serves requests.
    ///
    /// # Errors
    /// [`Error::MissingBinary`] when kapi was not built; [`Error::Exited`] when it stopped early (for instance
    /// because its port was taken — the message says so); [`Error::StartTimeout`] when it did not become
    /// ready in time.
    pub async fn start(self) -> Result<ControlPlane> {
        let kapi = binaries::kapi_path_or(self.kapi.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("kapi-{}-", self.name))
            .tempdir()
            .map_err(|e| Error::io("creating a state directory", e))?;
        let mut cp = ControlPlane {
            kapi,
            dir: Some(dir),
            child: Mutex::new(None),
            url: String::new(),
            port: 0,
            kubeconfig: PathBuf::new(),
            client: None,
            options: self,
        };
        cp.spawn().await?;
        Ok(cp)
    }
}

/// Another client identity on a control plane (its own client certificate CN), see [`ControlPlane::identity`].
#[derive(Clone)]
pub struct Identity {
    /// The user name (certificate CN) that the server's request accounting and deny list see.
    pub user: String,
    /// A kubeconfig file for this identity.
    pub kubeconfig: PathBuf,
    /// A client for this identity.
    pub client: Client,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

/// A running `kapi` test control plane. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct ControlPlane {
    kapi: PathBuf,
    dir: Option<TempDir>,
    child: Mutex<Option<Child>>,
    url: String,
    port: u16,
    kubeconfig: PathBuf,
    client: Option<Client>,
    options: ControlPlaneBuilder,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("name", &self.options.name)
            .field("url", &self.url)
            .field("dir", &self.dir())
            .finish()
    }
}

impl ControlPlane {
    /// Options for a control plane called `name` (the name only labels logs and errors).
    pub fn builder(name: &str) -> ControlPlaneBuilder {
        ControlPlaneBuilder {
            name: name.to_owned(),
            simulate_workloads: false,
            rbac: false,
            deny: Vec::new(),
            port: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            extra_args: Vec::new(),
            kapi: None,
        }
    }

    /// Start a control plane with default options.
    pub async fn start(name: &str) -> Result<ControlPlane> {
        Self::builder(name).start().await
    }

    /// Start several control planes at once (e.g. `["controller", "source", "dr"]`).
    pub async fn start_many<const N: usize>(names: [&str; N]) -> Result<[ControlPlane; N]> {
        let started = futures::future::join_all(names.iter().map(|n| ControlPlane::start(n))).await;
        let mut out = Vec::with_capacity(N);
        for cp in started {
            out.push(cp?);
        }
        Ok(out
            .try_into()
            .unwrap_or_else(|_: Vec<_>| unreachable!("join_all yields one result per name")))
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// The HTTPS URL of the API server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The state directory (certificates, etcd data, log, kubeconfig).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .unwrap_or_else(|| Path::new(""))
    }

    /// The admin kubeconfig file (user `admin`, group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// An admin client that does not retry 429/503/504 answers (kube's default client does, with backoff):
    /// for tests that must see such an answer, e.g. an eviction refused by a PodDisruptionBudget.
    pub async fn client_without_retries(&self) -> Result<Client> {
        client_with(&self.kubeconfig, false).await
    }

    /// A client for the admin identity.
    pub fn client(&self) -> Client {
        self.client.clone().expect("a started control plane has a client")
    }

    /// The directory of container logs that the server's `pods/log` serves
    /// (`<dir>/<namespace>/<pod>/<container>.log`; kapi runs with `--pod-log-dir` set to it). Whoever plays
    /// the kubelet (see [`crate::kubelet::Kubelet`]) writes the logs there.
    pub fn pod_log_dir(&self) -> PathBuf {
        self.dir().join("pod-logs")
    }

    /// The server's log (stderr of kapi).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("kapi.log")).unwrap_or_default()
    }

    /// The process id of the server, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref().map(Child::id)
    }

    /// Mint a client certificate for `user` (groups `system:masters`) and return its kubeconfig and client.
    ///
    /// Use one identity per process under test so that request accounting and the deny list can tell
    /// them apart. In RBAC mode ([`ControlPlaneBuilder::rbac`]) this identity is allowed everything (but the
    /// deny list); use [`ControlPlane::identity_in_groups`] for one that RBAC applies to.
    pub async fn identity(&self, user: &str) -> Result<Identity> {
        self.mint_identity(user, None).await
    }

    /// Mint a client certificate for `user` (CN) with exactly these `groups` (O; none if empty) and return
    /// its kubeconfig and client.
    ///
    /// For RBAC mode ([`ControlPlaneBuilder::rbac`]): bindings match the user name, the groups, and — for a
    /// user named `system:serviceaccount:<namespace>:<name>` — ServiceAccount subjects; such a user also
    /// gets groups `system:serviceaccounts` and `system:serviceaccounts:<namespace>`, and every user gets
    /// `system:authenticated`, as in Kubernetes.
    pub async fn identity_in_groups(&self, user: &str, groups: &[&str]) -> Result<Identity> {
        self.mint_identity(user, Some(groups)).await
    }

    /// Mint a bearer token for `user` with exactly these `groups` (none if empty) and return it.
    ///
    /// The server authenticates `Authorization: Bearer <token>` as this user, as kube-apiserver does the
    /// tokens of its static token file, so the token sees what a client certificate from
    /// [`ControlPlane::identity_in_groups`] with the same user and groups would: request accounting counts
    /// its requests under `user` ([`ControlPlane::requests`]), the deny list and RBAC apply to it (in RBAC
    /// mode it also gets `system:authenticated`, and `system:serviceaccounts` and
    /// `system:serviceaccounts:<namespace>` for a user named `system:serviceaccount:<namespace>:<name>`),
    /// and a TokenReview of it answers that user and groups. An unknown token is refused with 401. Pass
    /// `&["system:masters"]` for a token that is allowed everything; use
    /// [`ControlPlane::client_with_token`] for a client that sends it.
    ///
    /// The token is stored in the state directory (`kapi token`), so it works at once, survives
    /// [`ControlPlane::restart`], and is unknown to other control planes.
    ///
    /// # Errors
    /// [`Error::Command`] when `kapi token` fails, e.g. for an empty user name or a group containing a comma.
    pub fn mint_token(&self, user: &str, groups: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.kapi);
        cmd.arg("token")
            .arg("--dir")
            .arg(self.dir())
            .arg("--user")
            .arg(user);
        if groups.is_empty() {
            cmd.arg("--group").arg(""); // a token without groups (kapi's default is system:masters)
        }
        for g in groups {
            cmd.arg("--group").arg(g);
        }
        let out = cmd
            .output()
            .map_err(|e| Error::io(format!("running {}", self.kapi.display()), e))?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || token.is_empty() {
            return Err(Error::Command {
                command: format!("kapi token --user {user}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(token)
    }

    /// A client that authenticates with the bearer `token` (e.g. from [`ControlPlane::mint_token`]) instead
    /// of a client certificate, and trusts the server's CA like the admin client.
    ///
    /// # Errors
    /// [`Error::Kubeconfig`] when the admin kubeconfig (server URL and CA) cannot be used.
    pub async fn client_with_token(&self, token: &str) -> Result<Client> {
        let kc_error = |source| Error::Kubeconfig {
            path: self.kubeconfig.clone(),
            source,
        };
        let kc = Kubeconfig::read_from(&self.kubeconfig).map_err(kc_error)?;
        let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(kc_error)?;
        config.auth_info =
            serde_json::from_value(serde_json::json!({ "token": token })).map_err(|e| Error::Decode {
                context: "building the token client's credentials".into(),
                message: e.to_string(),
            })?;
        Ok(Client::try_from(config)?)
    }

    async fn mint_identity(&self, user: &str, groups: Option<&[&str]>) -> Result<Identity> {
        let users = self.dir().join("users");
        std::fs::create_dir_all(&users).map_err(|e| Error::io("creating users directory", e))?;
        let path = users.join(format!("{user}.kubeconfig"));
        let mut cmd = Command::new(&self.kapi);
        cmd.arg("kubeconfig")
            .arg("--dir")
            .arg(self.dir())
            .arg("--user")
            .arg(user)
            .arg("--out")
            .arg(&path);
        match groups {
            None => {} // kapi's default: system:masters
            Some([]) => {
                cmd.arg("--group").arg(""); // a certificate without groups
            }
            Some(groups) => {
                for g in groups {
                    cmd.arg("--group").arg(g);
                }
            }
        }
        let out = cmd
            .output()
            .map_err(|e| Error::io(format!("running {}", self.kapi.display()), e))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("kapi kubeconfig --user {user}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let client = client_from_kubeconfig(&path).await?;
        Ok(Identity {
            user: user.to_owned(),
            kubeconfig: path,
            client,
        })
    }

    /// A `kubectl` command (the build matching this server) with `KUBECONFIG` set to the admin kubeconfig.
    pub fn kubectl(&self) -> Result<Command> {
        let mut cmd = Command::new(binaries::kubectl_path()?);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        Ok(cmd)
    }

    /// Stop the server and start it again on the same port with the same state.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.options.port = Some(self.port);
        self.spawn().await
    }

    /// The port the server listens on.
    /// The last `lines` lines of every container log of this control plane's pods (written by the
    /// simulated kubelet), one `--- <file>` header each: for failure messages of tests.
    pub fn pod_logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut stack = vec![self.pod_log_dir()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {}\n", path.display()));
                for line in &all[all.len().saturating_sub(lines)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server now (also done on drop).
    pub fn stop(&self) {
        let Ok(mut guard) = self.child.lock() else { return };
        if let Some(mut child) = guard.take() {
            terminate(&mut child);
        }
    }

    async fn spawn(&mut self) -> Result<()> {
        let dir = self.dir().to_path_buf();
        let ready_path = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready_path);
        let log_path = dir.join("kapi.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io("creating kapi.log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("duplicating log handle", e))?;

        let opts = &self.options;
        let mut cmd = Command::new(&self.kapi);
        cmd.arg("serve")
            .arg("--dir")
            .arg(&dir)
            .arg("--secure-port")
            .arg(opts.port.unwrap_or(0).to_string())
            .arg("--exit-with-parent")
            .arg("--pod-log-dir")
            .arg(dir.join("pod-logs"));
        if opts.simulate_workloads {
            cmd.arg("--simulate-workloads");
        }
        if opts.rbac {
            cmd.arg("--authorization-mode").arg("RBAC");
        }
        for rule in &opts.deny {
            cmd.arg("--deny").arg(rule);
        }
        cmd.args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.kapi.display()), e))?;
        *self.child.lock().expect("child lock") = Some(child);

        let started = Instant::now();
        let ready: ReadyFile = loop {
            if let Some(status) = self.child_exit_status() {
                self.stop();
                return Err(Error::Exited {
                    name: self.options.name.clone(),
                    status,
                    log_tail: log_tail(&log_path, 30),
                });
            }
            if let Ok(text) = std::fs::read_to_string(&ready_path)
                && let Ok(ready) = serde_json::from_str(&text)
            {
                break ready;
            }
            if started.elapsed() > opts.start_timeout {
                self.stop();
                return Err(Error::StartTimeout {
                    name: self.options.name.clone(),
                    secs: opts.start_timeout.as_secs(),
                    log_tail: log_tail(&log_path, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.url = ready.url;
        self.port = ready.port;
        self.kubeconfig = dir.join("kubeconfig");
        self.client = Some(client_from_kubeconfig(&self.kubeconfig).await?);
        tracing::debug!(name = %self.options.name, url = %self.url, elapsed = ?started.elapsed(), "control plane ready");
        Ok(())
    }

    fn child_exit_status(&self) -> Option<String> {
        let mut guard = self.child.lock().ok()?;
        let child = guard.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown: {e}")),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("DR_SYNCER_KEEP_TESTENV").is_some()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "kept control plane `{}` state in {}",
                self.options.name,
                kept.display()
            );
        }
    }
}

/// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL; always reaps the child.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// An admin client from a kubeconfig file (its current context; e.g. of a control plane
/// `scripts/testenv.sh` started).
///
/// # Errors
/// [`Error::Kubeconfig`] when the file cannot be read or used.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    client_with(path, true).await
}

async fn client_with(path: &Path, retries: bool) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.into(),
        source,
    })?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.into(),
            source,
        })?;
    config.default_retry = retries;
    Ok(Client::try_from(config)?)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
