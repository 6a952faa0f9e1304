//! The simulated L2 network: a "switch" network namespace with a Linux bridge, and one network namespace
//! per simulated node, joined to the bridge by a veth pair.

use std::{
    collections::BTreeSet,
    fmt,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use nix::{sys::signal, unistd::Pid};

use crate::{Error, Result};

static NETWORKS: AtomicU64 = AtomicU64::new(0);

/// One isolated L2 network for simulated nodes.
///
/// A "switch" network namespace holds a Linux bridge; every simulated node (see
/// [`crate::kubelet::Kubelet`]) gets its own network namespace whose `eth0` is one end of a veth pair,
/// the other end being a port of the bridge. Names are unique per process (pid + counter), so tests in
/// parallel processes do not collide; interface names only need to be unique inside their namespace.
/// Dropping the network (and every [`crate::kubelet::Kubelet`] using it, which hold a reference) kills
/// the processes left in its namespaces and deletes them.
///
/// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and `ip` from iproute2.
#[derive(Clone)]
pub struct SimNetwork {
    pub(crate) inner: Arc<NetworkInner>,
}

impl fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNetwork")
            .field("switch", &self.inner.switch)
            .finish()
    }
}

pub(crate) struct NetworkInner {
    id: String,
    switch: String,
    ports: AtomicU64,
    nodes: Mutex<BTreeSet<String>>,
}

impl SimNetwork {
    /// Create the switch namespace and its bridge.
    ///
    /// # Errors
    /// [`Error::Command`] when `ip` fails (e.g. without CAP_NET_ADMIN).
    pub fn create() -> Result<SimNetwork> {
        let id = format!(
            "{}x{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("drs-sw-{id}");
        ip(&["netns", "add", &switch])?;
        let inner = NetworkInner {
            id,
            switch: switch.clone(),
            ports: AtomicU64::new(0),
            nodes: Mutex::new(BTreeSet::new()),
        };
        // From here on, Drop of `inner` removes the namespace if a later step fails.
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        ip(&["-n", &switch, "link", "set", "lo", "up"])?;
        Ok(SimNetwork {
            inner: Arc::new(inner),
        })
    }

    /// The name of the switch network namespace.
    pub fn switch_netns(&self) -> &str {
        &self.inner.switch
    }

    /// The network namespaces of the nodes currently attached.
    pub fn node_netns(&self) -> Vec<String> {
        self.inner
            .nodes
            .lock()
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Create a node namespace `drs-<id>-<node>` with `eth0` at `ip`/24 attached to the bridge.
    pub(crate) fn attach(&self, node: &str, ip_addr: &str) -> Result<String> {
        let inner = &self.inner;
        let port = inner.ports.fetch_add(1, Ordering::SeqCst);
        let netns = format!("drs-{}-{node}", inner.id);
        ip(&["netns", "add", &netns])?;
        if let Ok(mut nodes) = inner.nodes.lock() {
            nodes.insert(netns.clone());
        }
        let veth = format!("p{port}");
        ip(&[
            "-n",
            &inner.switch,
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns,
        ])?;
        ip(&["-n", &inner.switch, "link", "set", &veth, "master", "br0"])?;
        ip(&["-n", &inner.switch, "link", "set", &veth, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Kill what runs in a node namespace and delete it.
    pub(crate) fn detach(&self, netns: &str) {
        remove_netns(netns);
        if let Ok(mut nodes) = self.inner.nodes.lock() {
            nodes.remove(netns);
        }
    }
}

impl Drop for NetworkInner {
    fn drop(&mut self) {
        let nodes: Vec<String> = self
            .nodes
            .lock()
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default();
        for ns in nodes {
            remove_netns(&ns);
        }
        remove_netns(&self.switch);
    }
}

/// SIGKILL the processes inside `netns` (they would keep it alive), then delete it.
pub(crate) fn remove_netns(netns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", netns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGKILL);
            }
        }
    }
    if let Err(e) = ip(&["netns", "del", netns]) {
        tracing::warn!(%netns, error = %e, "deleting network namespace");
    }
}

/// Cut (`up` false) or restore the network of namespace `netns`: every interface but loopback goes down
/// or up (a partition of a node, as a pulled cable).
///
/// # Errors
/// `ip` failed.
pub fn set_links(netns: &str, up: bool) -> Result<()> {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "link", "show"])
        .output()
        .map_err(|e| Error::io("running ip", e))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "2: ethX@if3: <...>"
        let Some(name) = line.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n)) else {
            continue;
        };
        if name != "lo" {
            ip(&["-n", netns, "link", "set", name, if up { "up" } else { "down" }])?;
        }
    }
    Ok(())
}

/// Run `ip ARGS`.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

/// Run a command; a non-zero exit is [`Error::Command`] with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
