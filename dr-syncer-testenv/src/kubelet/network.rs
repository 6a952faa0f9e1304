//! The simulated L2 network: a "switch" network namespace with a Linux bridge, and one network namespace
//! per simulated node, joined to the bridge by a veth pair. A [`SimRouter`] joins networks (a network
//! namespace with IP forwarding and one leg per network) and routes the "external" addresses of nodes and
//! load balancers. [`listen_in`] and [`connect_from`] open sockets inside a namespace.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt, io,
    net::{TcpListener, TcpStream, ToSocketAddrs},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use nix::{sys::signal, unistd::Pid};

use crate::{Error, Result};

static NETWORKS: AtomicU64 = AtomicU64::new(0);
static ROUTERS: AtomicU64 = AtomicU64::new(0);

/// The range node external IPs are taken from ([`crate::kubelet::KubeletBuilder::node_external_ip`];
/// TEST-NET-3).
pub const EXTERNAL_NODE_RANGE: &str = "203.0.113.0/24";
/// The range simulated load balancers take their ingress IPs from (TEST-NET-2).
pub const LOAD_BALANCER_RANGE: &str = "198.51.100.0/24";

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
    /// The router this network is joined to.
    join: Mutex<Option<Join>>,
    /// Extra addresses on node namespaces (node external IPs, load-balancer IPs): netns → address → the
    /// node's internal IP (the router's next hop).
    extras: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

/// How a network is joined to a [`SimRouter`].
#[derive(Clone)]
struct Join {
    router: Arc<RouterInner>,
    gateway: String,
    routes: Routes,
}

/// Which routes the nodes of a network joined to a [`SimRouter`] get through its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routes {
    /// A default route: every other network is reachable (and replies to any source route back). The
    /// production side.
    Everything,
    /// Only the "external" ranges ([`EXTERNAL_NODE_RANGE`], [`LOAD_BALANCER_RANGE`]): the internal
    /// addresses of other networks are unreachable ("network unreachable"). The DR side.
    ExternalOnly,
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
            join: Mutex::new(None),
            extras: Mutex::new(BTreeMap::new()),
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
        if let Some(join) = self.joined() {
            node_routes(&netns, &join, None)?;
        }
        Ok(netns)
    }

    fn joined(&self) -> Option<Join> {
        self.inner.join.lock().ok().and_then(|j| j.clone())
    }

    /// Whether the network is joined to a [`SimRouter`].
    pub fn is_routed(&self) -> bool {
        self.joined().is_some()
    }

    /// Put `addr` (/32) on the `eth0` of node namespace `netns` and, when the network is joined to a
    /// router, route it there (next hop `node_ip`, the node's internal address). Idempotent.
    pub(crate) fn add_address(&self, netns: &str, node_ip: &str, addr: &str) -> Result<()> {
        ip(&[
            "-n",
            netns,
            "addr",
            "replace",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ])?;
        if let Ok(mut extras) = self.inner.extras.lock() {
            extras
                .entry(netns.to_owned())
                .or_default()
                .insert(addr.to_owned(), node_ip.to_owned());
        }
        if let Some(join) = self.joined() {
            ip(&[
                "-n",
                &join.router.netns,
                "route",
                "replace",
                &format!("{addr}/32"),
                "via",
                node_ip,
            ])?;
            if is_node_external(addr) {
                node_routes(netns, &join, Some(addr))?;
            }
        }
        Ok(())
    }

    /// Undo [`SimNetwork::add_address`] (errors ignored: the namespace may be gone).
    pub(crate) fn remove_address(&self, netns: &str, addr: &str) {
        let _ = ip(&["-n", netns, "addr", "del", &format!("{addr}/32"), "dev", "eth0"]);
        if let Ok(mut extras) = self.inner.extras.lock()
            && let Some(m) = extras.get_mut(netns)
        {
            m.remove(addr);
        }
        if let Some(join) = self.joined() {
            let _ = ip(&["-n", &join.router.netns, "route", "del", &format!("{addr}/32")]);
        }
    }

    /// Kill what runs in a node namespace and delete it.
    pub(crate) fn detach(&self, netns: &str) {
        remove_netns(netns);
        if let Ok(mut nodes) = self.inner.nodes.lock() {
            nodes.remove(netns);
        }
        let extras = self
            .inner
            .extras
            .lock()
            .ok()
            .and_then(|mut e| e.remove(netns))
            .unwrap_or_default();
        if let Some(join) = self.joined() {
            for addr in extras.keys() {
                let _ = ip(&["-n", &join.router.netns, "route", "del", &format!("{addr}/32")]);
            }
        }
    }
}

/// The routes of a node namespace on a network joined to a router. A node with an external IP (`src`)
/// leaves through the router from that address, as through a NAT gateway: the other side can answer it
/// even where it has no route to this network's internal /24.
fn node_routes(netns: &str, join: &Join, src: Option<&str>) -> Result<()> {
    let route = |dest: &str| -> Result<()> {
        let mut args = vec!["-n", netns, "route", "replace", dest, "via", &join.gateway];
        if let Some(src) = src {
            args.extend(["src", src]);
        }
        ip(&args)
    };
    match join.routes {
        Routes::Everything => route("default"),
        Routes::ExternalOnly => {
            for range in [EXTERNAL_NODE_RANGE, LOAD_BALANCER_RANGE] {
                route(range)?;
            }
            Ok(())
        }
    }
}

/// Whether `addr` is a node external IP (not a load balancer's).
fn is_node_external(addr: &str) -> bool {
    addr.starts_with(EXTERNAL_NODE_RANGE.trim_end_matches("0/24"))
}

/// A router between [`SimNetwork`]s: a network namespace with IP forwarding on and one leg (a veth pair
/// to the network's bridge, with the gateway address) per joined network.
///
/// It routes every joined network's /24 (directly connected) and the extra addresses of nodes — their
/// external IPs ([`crate::kubelet::KubeletBuilder::node_external_ip`]) and the ingress IPs of simulated
/// load balancers — each as a /32 to the node holding it. What the nodes of a network reach through it
/// depends on its [`Routes`]: production networks join with [`Routes::Everything`], DR networks with
/// [`Routes::ExternalOnly`], so that DR nodes reach production nodes only at external addresses.
///
/// ```no_run
/// # fn demo() -> dr_syncer_testenv::Result<()> {
/// use dr_syncer_testenv::kubelet::{Routes, SimNetwork, SimRouter};
/// let (prod, dr) = (SimNetwork::create()?, SimNetwork::create()?);
/// let router = SimRouter::create()?;
/// router.join(&prod, "10.90.0.1", Routes::Everything)?;
/// router.join(&dr, "10.91.0.1", Routes::ExternalOnly)?;
/// # Ok(()) }
/// ```
///
/// Dropping the router and every network joined to it (they hold a reference) kills what runs in its
/// namespace and deletes it.
#[derive(Clone)]
pub struct SimRouter {
    inner: Arc<RouterInner>,
}

impl fmt::Debug for SimRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRouter")
            .field("netns", &self.inner.netns)
            .finish()
    }
}

struct RouterInner {
    netns: String,
    legs: AtomicU64,
}

impl Drop for RouterInner {
    fn drop(&mut self) {
        remove_netns(&self.netns);
    }
}

impl SimRouter {
    /// Create the router's namespace (IP forwarding on).
    ///
    /// # Errors
    /// [`Error::Command`] when `ip` or `sysctl` fail (e.g. without CAP_NET_ADMIN).
    pub fn create() -> Result<SimRouter> {
        let netns = format!(
            "drs-rt-{}x{}",
            std::process::id(),
            ROUTERS.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &netns])?;
        let inner = RouterInner {
            netns: netns.clone(),
            legs: AtomicU64::new(0),
        };
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["netns", "exec", &netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        )?;
        Ok(SimRouter {
            inner: Arc::new(inner),
        })
    }

    /// The router's network namespace.
    pub fn netns(&self) -> &str {
        &self.inner.netns
    }

    /// Join `network` to the router: a leg with address `gateway` (in the network's /24, e.g.
    /// `10.90.0.1`; not a node's) on the network's bridge, and `routes` through it on every node of the
    /// network, those attached later included. The network's node external IPs become routed.
    ///
    /// # Errors
    /// [`Error::Command`] when `ip` fails, or when the network is joined already.
    pub fn join(&self, network: &SimNetwork, gateway: &str, routes: Routes) -> Result<()> {
        let net = &network.inner;
        if network.is_routed() {
            return Err(Error::Command {
                command: format!("joining {} to {}", net.switch, self.inner.netns),
                stderr: "the network is joined to a router already".into(),
            });
        }
        let leg = format!("n{}", self.inner.legs.fetch_add(1, Ordering::SeqCst));
        let rt = &self.inner.netns;
        ip(&[
            "-n",
            rt,
            "link",
            "add",
            &leg,
            "type",
            "veth",
            "peer",
            "name",
            "router",
            "netns",
            &net.switch,
        ])?;
        ip(&["-n", &net.switch, "link", "set", "router", "master", "br0"])?;
        ip(&["-n", &net.switch, "link", "set", "router", "up"])?;
        ip(&["-n", rt, "addr", "add", &format!("{gateway}/24"), "dev", &leg])?;
        ip(&["-n", rt, "link", "set", &leg, "up"])?;
        let join = Join {
            router: self.inner.clone(),
            gateway: gateway.to_owned(),
            routes,
        };
        if let Ok(mut j) = net.join.lock() {
            *j = Some(join.clone());
        }
        for netns in network.node_netns() {
            let external = net.extras.lock().ok().and_then(|e| {
                e.get(&netns)
                    .and_then(|m| m.keys().find(|a| is_node_external(a)).cloned())
            });
            node_routes(&netns, &join, external.as_deref())?;
        }
        let extras: Vec<(String, String)> = net
            .extras
            .lock()
            .map(|e| {
                e.values()
                    .flat_map(|m| m.iter().map(|(a, n)| (a.clone(), n.clone())))
                    .collect()
            })
            .unwrap_or_default();
        for (addr, node_ip) in extras {
            ip(&[
                "-n",
                rt,
                "route",
                "replace",
                &format!("{addr}/32"),
                "via",
                &node_ip,
            ])?;
        }
        Ok(())
    }
}

/// Run `f` on a new thread that entered network namespace `netns` (a name as
/// `ip netns add` makes them), and return its result. Sockets made there stay in that namespace
/// whichever thread uses them later, as do threads it starts.
///
/// # Errors
/// The namespace cannot be opened or entered.
pub fn in_netns<T, F>(netns: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = std::fs::File::open(format!("/run/netns/{netns}"))?;
    std::thread::Builder::new()
        .name(format!("netns-{netns}"))
        .spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })?
        .join()
        .map_err(|_| io::Error::other("a thread in a network namespace panicked"))?
}

/// A TCP listener bound to `addr` (e.g. `0.0.0.0:8080`) inside network namespace `netns` (e.g.
/// [`crate::kubelet::Kubelet::netns`] of a node): what a process of that node listening there would be.
/// Accept from any thread or task.
///
/// # Errors
/// The namespace cannot be entered or the address not bound.
pub fn listen_in(netns: &str, addr: &str) -> io::Result<TcpListener> {
    let addr = addr.to_owned();
    in_netns(netns, move || TcpListener::bind(addr))?
}

/// A TCP connection to `addr` made from inside network namespace `netns` (e.g. from a DR node), within
/// `timeout`. The error tells why it failed: [`io::ErrorKind::ConnectionRefused`] (nothing listens),
/// [`io::ErrorKind::NetworkUnreachable`] (no route), [`io::ErrorKind::TimedOut`].
///
/// # Errors
/// As above, or the namespace cannot be entered.
pub fn connect_from(netns: &str, addr: &str, timeout: std::time::Duration) -> io::Result<TcpStream> {
    let addr = addr.to_owned();
    in_netns(netns, move || {
        let sa = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {addr}")))?;
        TcpStream::connect_timeout(&sa, timeout)
    })?
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
