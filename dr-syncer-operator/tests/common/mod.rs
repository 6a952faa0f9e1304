//! Harness of the operator tests: three test control planes (controller, source "prod", destination
//! "dr"), the CRDs, RemoteClusters whose kubeconfig Secrets hold per-process identities, and the
//! operator binary as a child process.

#![allow(dead_code, unreachable_pub)] // (each test binary uses a different part of the harness)

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use dr_syncer_core::api::{NamespaceMapping, RemoteCluster};
use dr_syncer_testenv::{ControlPlane, Identity, apply_yaml, init_tracing, wait_for};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

pub const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-operator");
/// Correctness bound of waits (not a performance assertion).
pub const T: Duration = Duration::from_secs(60);
/// The namespace of the custom resources on the controller cluster.
pub const NS: &str = "dr-syncer";

pub struct Env {
    pub controller: ControlPlane,
    pub prod: ControlPlane,
    pub dr: ControlPlane,
    /// The identities the operator uses on prod and dr (their kubeconfigs are in Secrets).
    pub prod_id: Identity,
    pub dr_id: Identity,
}

/// A free local port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Env {
    /// Three control planes, the CRDs on the controller, and RemoteClusters `prod` and `dr` in `dr-syncer`.
    pub async fn start(name: &str) -> Env {
        Self::start_with(name, |b| b).await
    }

    /// As [`Env::start`], with options for the controller control plane (e.g. RBAC mode).
    pub async fn start_with(
        name: &str,
        controller_options: impl FnOnce(
            dr_syncer_testenv::ControlPlaneBuilder,
        ) -> dr_syncer_testenv::ControlPlaneBuilder,
    ) -> Env {
        init_tracing();
        let (controller, prod, dr) = tokio::join!(
            controller_options(ControlPlane::builder(&format!("{name}-ctl"))).start(),
            ControlPlane::builder(&format!("{name}-prod"))
                .simulate_workloads(true)
                .start(),
            ControlPlane::builder(&format!("{name}-dr"))
                .simulate_workloads(true)
                .start(),
        );
        let (controller, prod, dr) = (controller.unwrap(), prod.unwrap(), dr.unwrap());
        let crds = dr_syncer_core::api::crds_yaml().unwrap();
        apply_yaml(&controller.client(), None, &crds).await.unwrap();
        let c = controller.client();
        wait_for("CRDs served", T, || async {
            Ok((Api::<NamespaceMapping>::all(c.clone())
                .list(&ListParams::default())
                .await
                .is_ok()
                && Api::<RemoteCluster>::all(c.clone())
                    .list(&ListParams::default())
                    .await
                    .is_ok())
            .then_some(()))
        })
        .await
        .unwrap();
        apply_yaml(
            &c,
            None,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
        )
        .await
        .unwrap();
        let prod_id = prod.identity("dr-syncer-operator").await.unwrap();
        let dr_id = dr.identity("dr-syncer-operator").await.unwrap();
        let env = Env {
            controller,
            prod,
            dr,
            prod_id,
            dr_id,
        };
        env.put_kubeconfig("prod-kubeconfig", "kubeconfig", &env.prod_id)
            .await;
        env.put_kubeconfig("dr-kubeconfig", "kubeconfig", &env.dr_id)
            .await;
        env.apply(&format!(
            r#"
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: prod, namespace: {NS}}}
spec:
  kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}
---
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: dr, namespace: {NS}}}
spec:
  kubeconfigSecretRef: {{name: dr-kubeconfig, namespace: {NS}}}
"#
        ))
        .await;
        env
    }

    /// Store `id`'s kubeconfig in Secret `name` under `key` on the controller cluster.
    pub async fn put_kubeconfig(&self, name: &str, key: &str, id: &Identity) {
        let kubeconfig = std::fs::read_to_string(&id.kubeconfig).unwrap();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NS},
            "stringData": {key: kubeconfig},
        }))
        .unwrap();
        let api: Api<Secret> = Api::namespaced(self.controller.client(), NS);
        let _ = api.delete(name, &Default::default()).await;
        api.create(&PostParams::default(), &secret).await.unwrap();
    }

    /// Apply YAML on the controller cluster.
    pub async fn apply(&self, yaml: &str) {
        apply_yaml(&self.controller.client(), Some(NS), yaml)
            .await
            .unwrap();
    }

    pub fn nm_api(&self) -> Api<NamespaceMapping> {
        Api::namespaced(self.controller.client(), NS)
    }

    /// Trigger one sync of NamespaceMapping `name`: annotation `dr-syncer.io/sync-now` set to `value`.
    pub async fn sync_now(&self, name: &str, value: &str) {
        self.nm_api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/sync-now": value}}})),
            )
            .await
            .unwrap();
    }

    /// Start the operator with `args` (on top of the defaults below) as identity `user` on the controller.
    pub async fn operator(&self, user: &str, args: &[&str]) -> Operator {
        let id = self.controller.identity(user).await.unwrap();
        Operator::spawn(&id, args)
    }

    /// A mapping's status once `check` holds.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&dr_syncer_core::api::NamespaceMappingStatus) -> bool,
    ) -> NamespaceMapping {
        let api = self.nm_api();
        wait_for(what, T, || {
            let api = api.clone();
            let check = &check;
            async move {
                let nm = api.get(name).await?;
                Ok(nm.status.as_ref().filter(|s| check(s)).map(|_| nm.clone()))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Events on object `name` (reasons and notes) on the controller cluster.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        events_for(&self.controller.client(), NS, name).await
    }

    /// The events about `name` once one with `reason` is among them (the operator records an event
    /// after the status write that tests wait for, so reading right after that write can miss it).
    pub async fn wait_event(&self, name: &str, reason: &str) -> Vec<(String, String)> {
        self.wait_events(name, &format!("event {reason}"), |events| {
            events.iter().any(|(r, _)| r == reason)
        })
        .await
    }

    /// The events about `name` once they satisfy `done` (see [`Env::wait_event`]); on timeout, a panic
    /// that shows the events last read.
    pub async fn wait_events(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let last = std::sync::Mutex::new(Vec::new());
        let (last_read, done) = (&last, &done);
        wait_for(&format!("{name}: {what}"), T, || async move {
            let events = self.events(name).await;
            if done(&events) {
                return Ok(Some(events));
            }
            *last_read.lock().unwrap() = events;
            Ok(None)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; events: {:?}", last.lock().unwrap()))
    }
}

/// Events about object `name` in `ns`: (reason, message). Read through the core/v1 API, which serves
/// the events.k8s.io/v1 Events the operator records (one storage, as in kube-apiserver).
pub async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<(String, String)> = core
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A running operator process (killed when dropped).
pub struct Operator {
    child: Option<Child>,
    pub metrics_port: u16,
    pub probe_port: u16,
    pub log: PathBuf,
    pub user: String,
}

impl Operator {
    pub fn spawn(id: &Identity, args: &[&str]) -> Operator {
        let (metrics_port, probe_port) = (free_port(), free_port());
        let dir = tempfile::Builder::new()
            .prefix("operator-log")
            .tempdir()
            .unwrap()
            .keep();
        let log = dir.join("operator.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &id.kubeconfig)
            .env("POD_NAMESPACE", NS)
            .arg("--metrics-bind-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--health-probe-bind-address")
            .arg(format!("127.0.0.1:{probe_port}"))
            .arg("--log-level")
            .arg("info,dr_syncer_operator=debug,dr_syncer_core=debug")
            .arg("--identity")
            .arg(&id.user)
            .args(["--recheck-interval", "3s", "--unhealthy-recheck-interval", "1s"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Operator {
            child: Some(child),
            metrics_port,
            probe_port,
            log,
            user: id.user.clone(),
        }
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the metrics (or probe) port: status code and body.
    pub async fn get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let code = out.get(9..12)?.parse().ok()?;
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((code, body))
    }

    pub async fn metrics(&self) -> String {
        self.get(self.metrics_port, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit (killed after `timeout`); the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- operator log ({}) ----\n{}", self.user, self.log());
        }
        // The log was printed above if the test failed; its directory goes either way.
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A condition of a mapping's status: (status, reason, message).
pub fn condition(
    s: &dr_syncer_core::api::NamespaceMappingStatus,
    t: &str,
) -> Option<(String, String, String)> {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// A NamespaceMapping `name` in the resources' namespace with `body` (the lines of its spec).
pub fn mapping(name: &str, body: &str) -> String {
    format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{body}\n"
    )
}

/// What a `dr-syncer-cli` run printed and returned.
pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// Assert that it succeeded (showing what it printed otherwise).
    pub fn ok(&self) {
        assert_eq!(self.code, 0, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
    }
}

/// `dr-syncer-cli` (built with the workspace) with `args`.
pub fn cli(args: &[&str]) -> CliOut {
    let bin = BIN.replace("dr-syncer-operator", "dr-syncer-cli");
    let out = Command::new(bin).args(args).output().expect("run dr-syncer-cli");
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A CLI drill step on both clusters (`reader` on prod, `writer` on dr) for namespace `ns` and the
/// resource types `types`, confirmed (`--yes`), with `args`.
pub fn drill(reader: &Identity, writer: &Identity, ns: &str, types: &str, args: &[&str]) -> CliOut {
    let mut all = vec![
        "--source-kubeconfig",
        reader.kubeconfig.to_str().unwrap(),
        "--dest-kubeconfig",
        writer.kubeconfig.to_str().unwrap(),
        "--source-namespace",
        ns,
        "--resource-types",
        types,
        "--yes",
    ];
    all.extend_from_slice(args);
    cli(&all)
}
