//! How a mover in the DR cluster reaches a source agent (`pvcSync.exposure`): the addresses to dial for
//! the agent of one node, by mode, and what to tell the user when the chosen mode does not answer.
//!
//! Pure: the IO half (reading the agent pods and Nodes, the Services of `NodePort` and `LoadBalancer`)
//! is in `crate::ops::PvcDataSync` and `crate::ops::probe_agents`. Whatever the address, the mover checks
//! the agent's pinned host key and the agent checks the transfer key's `from=` addresses: the pin is of
//! the agent, not of the address.

use std::{collections::BTreeMap, fmt};

pub use crate::api::ExposureMode;

/// The exposure settings of one cluster's agents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The chosen mode; `None`: the node's InternalIP, then its ExternalIP ([`AUTO_MODES`]).
    pub mode: Option<ExposureMode>,
    /// The address template of mode `Address` (`{node}` replaced by the node's name).
    pub address: Option<String>,
    /// A fixed node port (mode `NodePort`).
    pub node_port: Option<u16>,
    /// Annotations of the Services made for the agents.
    pub service_annotations: BTreeMap<String, String>,
}

/// The modes tried, in order, when none is chosen: they need no object of their own.
pub const AUTO_MODES: [ExposureMode; 2] = [ExposureMode::NodeInternalIp, ExposureMode::NodeExternalIp];

/// A host and port to dial.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// An IP address or a DNS name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Endpoint {
    /// Parse `host`, `host:port`, `[v6]` or `[v6]:port` (a bare IPv6 address has no port); `port` when
    /// none is given.
    ///
    /// # Errors
    /// A message naming the text when the host is empty or has characters no host name has, or the
    /// port is not 1–65535.
    pub fn parse(text: &str, port: u16) -> Result<Endpoint, String> {
        let text = text.trim();
        let (host, given) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: no closing ]"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("{text:?}: expected :port after ]"))?,
                    ),
                ),
            }
        } else if text.matches(':').count() > 1 {
            (text, None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_' | b'%'));
        if !valid_host {
            return Err(format!("{text:?}: not a host name or IP address"));
        }
        let port = match given {
            None => port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text:?}: the port is not 1-65535"))?,
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

/// The addresses a Node publishes (`status.addresses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    /// `InternalIP` addresses.
    pub internal: Vec<String>,
    /// `ExternalIP` addresses.
    pub external: Vec<String>,
}

impl NodeAddresses {
    /// From a Node object.
    pub fn of(node: &k8s_openapi::api::core::v1::Node) -> NodeAddresses {
        let mut out = NodeAddresses::default();
        for a in node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
        {
            match a.type_.as_str() {
                "InternalIP" => out.internal.push(a.address.clone()),
                "ExternalIP" => out.external.push(a.address.clone()),
                _ => {}
            }
        }
        out
    }
}

/// What is known of one agent for choosing its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPlace {
    /// The node's name.
    pub node: String,
    /// The agent pod's `hostIP` (the node's primary InternalIP).
    pub host_ip: Option<String>,
    /// The Node's addresses (empty when the Node cannot be read).
    pub addresses: NodeAddresses,
    /// The agents' Service node port, when there is a NodePort Service.
    pub node_port: Option<u16>,
    /// The load balancer's address made for this transfer (mode `LoadBalancer`).
    pub load_balancer: Option<String>,
}

/// One address to dial, and the mode it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The mode.
    pub mode: ExposureMode,
    /// The address.
    pub endpoint: Endpoint,
}

impl Exposure {
    /// Check the settings.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode == Some(ExposureMode::Address) && self.address.as_deref().is_none_or(str::is_empty) {
            return Err("pvcSync.exposure: mode Address needs exposure.address".into());
        }
        if let Some(a) = &self.address {
            Endpoint::parse(&a.replace("{node}", "node"), 1)
                .map_err(|e| format!("pvcSync.exposure.address: {e}"))?;
        }
        if self.node_port == Some(0) {
            return Err("pvcSync.exposure.nodePort: not a port".into());
        }
        Ok(())
    }

    /// Whether the agents need their NodePort Service.
    pub fn needs_node_port_service(&self) -> bool {
        self.mode == Some(ExposureMode::NodePort)
    }

    /// The addresses of mode `mode` for the agent at `place` (serving on `port`), in the order to dial
    /// them; empty when the mode has none there (a node without ExternalIP, no NodePort Service yet).
    pub fn candidates_of(&self, mode: ExposureMode, place: &AgentPlace, port: u16) -> Vec<Candidate> {
        let at = |hosts: Vec<String>, port: u16| -> Vec<Candidate> {
            let mut out: Vec<Candidate> = Vec::new();
            for host in hosts {
                let c = Candidate {
                    mode,
                    endpoint: Endpoint { host, port },
                };
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            out
        };
        let internal = || -> Vec<String> {
            place
                .host_ip
                .iter()
                .chain(place.addresses.internal.iter())
                .cloned()
                .collect()
        };
        match mode {
            ExposureMode::NodeInternalIp => at(internal(), port),
            ExposureMode::NodeExternalIp => at(place.addresses.external.clone(), port),
            ExposureMode::NodePort => match place.node_port {
                Some(np) => {
                    let mut hosts = internal();
                    hosts.extend(place.addresses.external.iter().cloned());
                    at(hosts, np)
                }
                None => Vec::new(),
            },
            ExposureMode::LoadBalancer => place
                .load_balancer
                .iter()
                .filter_map(|a| Endpoint::parse(a, port).ok())
                .map(|endpoint| Candidate { mode, endpoint })
                .collect(),
            ExposureMode::Address => self
                .address
                .iter()
                .filter_map(|a| Endpoint::parse(&a.replace("{node}", &place.node), port).ok())
                .map(|endpoint| Candidate { mode, endpoint })
                .collect(),
        }
    }

    /// The addresses a mover dials for the agent at `place`: the chosen mode's, or, with none chosen,
    /// those of [`AUTO_MODES`] in order.
    pub fn candidates(&self, place: &AgentPlace, port: u16) -> Vec<Candidate> {
        match self.mode {
            Some(m) => self.candidates_of(m, place, port),
            None => AUTO_MODES
                .iter()
                .flat_map(|m| self.candidates_of(*m, place, port))
                .collect(),
        }
    }

    /// Every address worth probing for `place`: the chosen ones first, then those of the other modes
    /// that need no object made for them (InternalIP, ExternalIP, an existing NodePort Service, the
    /// address override) — so that a probe can say which mode would work.
    pub fn probe_candidates(&self, place: &AgentPlace, port: u16) -> Vec<Candidate> {
        let mut out = self.candidates(place, port);
        for m in [
            ExposureMode::NodeInternalIp,
            ExposureMode::NodeExternalIp,
            ExposureMode::NodePort,
            ExposureMode::Address,
        ] {
            for c in self.candidates_of(m, place, port) {
                if !out.iter().any(|o| o.endpoint == c.endpoint) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Whether `mode` is one the movers use (the chosen one, or one of [`AUTO_MODES`]).
    pub fn uses(&self, mode: ExposureMode) -> bool {
        match self.mode {
            Some(m) => m == mode,
            None => AUTO_MODES.contains(&mode),
        }
    }

    /// The name of what the movers use, for messages.
    pub fn describe(&self) -> String {
        match self.mode {
            Some(m) => m.to_string(),
            None => "NodeInternalIP, then NodeExternalIP (no exposure.mode set)".into(),
        }
    }
}

/// The outcome of probing one agent's candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeVerdict {
    /// The address a mover would use (the first of the used modes that answered).
    pub working: Option<Candidate>,
    /// The user-facing message when the used modes did not answer (`None` when one did).
    pub error: Option<String>,
}

/// Judge one agent's probe answers: `answers` are the probed candidates with the error each gave
/// (`None`: answered with the pinned host key and accepted the key).
pub fn judge(exposure: &Exposure, node: &str, answers: &[(Candidate, Option<String>)]) -> ProbeVerdict {
    if let Some((c, _)) = answers
        .iter()
        .find(|(c, err)| err.is_none() && exposure.uses(c.mode))
    {
        return ProbeVerdict {
            working: Some(c.clone()),
            error: None,
        };
    }
    // `<address> (<mode>): <error>` of the answers whose mode is (or is not) one the movers use.
    let listed = |used: bool| -> Vec<String> {
        answers
            .iter()
            .filter(|(c, _)| exposure.uses(c.mode) == used)
            .map(|(c, err)| {
                format!(
                    "{} ({}): {}",
                    c.endpoint,
                    c.mode,
                    err.as_deref().unwrap_or("no answer")
                )
            })
            .collect()
    };
    let tried = listed(true);
    let tried = if tried.is_empty() {
        format!("no address of mode {} is known for it", exposure.describe())
    } else {
        tried.join("; ")
    };
    let other = answers
        .iter()
        .find(|(c, err)| err.is_none() && !exposure.uses(c.mode));
    let advice = match other {
        Some((c, _)) => format!(
            "{} answers at {}: set the source RemoteCluster's pvcSync.exposure.mode to {} (CLI: --agent-exposure {})",
            c.mode, c.endpoint, c.mode, c.mode
        ),
        None => {
            let others = listed(false);
            format!(
                "no other address of the agent answers either{}: expose the agents with pvcSync.exposure.mode \
                 NodePort or LoadBalancer, or give the address of a proxy or tunnel (mode Address), and open the \
                 firewall from the DR nodes (see \"networks\" in docs/pvc-replication.md)",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", others.join("; "))
                }
            )
        }
    };
    ProbeVerdict {
        working: None,
        error: Some(format!(
            "the agent on node {node} cannot be reached from the DR cluster: {tried}. {advice}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> AgentPlace {
        AgentPlace {
            node: "prod-a".into(),
            host_ip: Some("10.0.0.11".into()),
            addresses: NodeAddresses {
                internal: vec!["10.0.0.11".into()],
                external: vec!["203.0.113.11".into()],
            },
            node_port: Some(31022),
            load_balancer: None,
        }
    }

    fn shown(c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| format!("{} {}", c.mode, c.endpoint)).collect()
    }

    #[test]
    fn endpoints_parse_with_and_without_ports() {
        let p = |t: &str| Endpoint::parse(t, 2222).map(|e| e.to_string());
        assert_eq!(p("10.0.0.1").unwrap(), "10.0.0.1:2222");
        assert_eq!(p("tunnel.example.com:443").unwrap(), "tunnel.example.com:443");
        assert_eq!(p("[fd00::1]:2200").unwrap(), "[fd00::1]:2200");
        assert_eq!(p("fd00::1").unwrap(), "[fd00::1]:2222");
        for bad in [
            "",
            "a b",
            "x:0",
            "x:70000",
            "x:y",
            "[fd00::1",
            "[fd00::1]2200",
            "a;rm -rf /",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_mode_names_its_addresses() {
        let e = |mode, address: Option<&str>| Exposure {
            mode,
            address: address.map(str::to_string),
            ..Exposure::default()
        };
        assert_eq!(
            shown(&e(None, None).candidates(&place(), 2222)),
            [
                "NodeInternalIP 10.0.0.11:2222",
                "NodeExternalIP 203.0.113.11:2222"
            ]
        );
        assert_eq!(
            shown(&e(Some(ExposureMode::NodeExternalIp), None).candidates(&place(), 2222)),
            ["NodeExternalIP 203.0.113.11:2222"]
        );
        assert_eq!(
            shown(&e(Some(ExposureMode::NodePort), None).candidates(&place(), 2222)),
            ["NodePort 10.0.0.11:31022", "NodePort 203.0.113.11:31022"]
        );
        let tunnel = e(Some(ExposureMode::Address), Some("{node}.tunnel.example.com:443"));
        assert_eq!(
            shown(&tunnel.candidates(&place(), 2222)),
            ["Address prod-a.tunnel.example.com:443"]
        );
        let lb = AgentPlace {
            load_balancer: Some("198.51.100.7".into()),
            ..place()
        };
        assert_eq!(
            shown(&e(Some(ExposureMode::LoadBalancer), None).candidates(&lb, 2222)),
            ["LoadBalancer 198.51.100.7:2222"]
        );
        // Without an ExternalIP or a Service, those modes have nothing to dial.
        let bare = AgentPlace {
            addresses: NodeAddresses::default(),
            node_port: None,
            ..place()
        };
        assert!(
            e(Some(ExposureMode::NodeExternalIp), None)
                .candidates(&bare, 2222)
                .is_empty()
        );
        assert!(
            e(Some(ExposureMode::NodePort), None)
                .candidates(&bare, 2222)
                .is_empty()
        );
        // A probe of InternalIP also tries the others that need no object of their own.
        assert_eq!(
            shown(&e(Some(ExposureMode::NodeInternalIp), None).probe_candidates(&place(), 2222)),
            [
                "NodeInternalIP 10.0.0.11:2222",
                "NodeExternalIP 203.0.113.11:2222",
                "NodePort 10.0.0.11:31022",
                "NodePort 203.0.113.11:31022"
            ]
        );
    }

    #[test]
    fn a_failed_probe_names_the_mode_that_works() {
        let internal = Exposure {
            mode: Some(ExposureMode::NodeInternalIp),
            ..Exposure::default()
        };
        let cands = internal.probe_candidates(&place(), 2222);
        let answers: Vec<(Candidate, Option<String>)> = cands
            .into_iter()
            .map(|c| {
                let err = (c.mode != ExposureMode::NodeExternalIp).then(|| "network unreachable".to_string());
                (c, err)
            })
            .collect();
        let v = judge(&internal, "prod-a", &answers);
        assert_eq!(v.working, None);
        let msg = v.error.unwrap();
        assert!(
            msg.contains("10.0.0.11:2222 (NodeInternalIP): network unreachable"),
            "{msg}"
        );
        assert!(
            msg.contains("set the source RemoteCluster's pvcSync.exposure.mode to NodeExternalIP"),
            "{msg}"
        );
        // With no mode set, the ExternalIP is used: it works.
        let auto = judge(&Exposure::default(), "prod-a", &answers);
        assert_eq!(
            auto.working.map(|c| c.endpoint.to_string()).as_deref(),
            Some("203.0.113.11:2222")
        );
        // Nothing answers: the advice names the modes that need objects or a tunnel.
        let none: Vec<_> = answers
            .into_iter()
            .map(|(c, _)| (c, Some("timed out".to_string())))
            .collect();
        let msg = judge(&internal, "prod-a", &none).error.unwrap();
        assert!(msg.contains("NodePort or LoadBalancer"), "{msg}");
        assert!(
            Exposure {
                mode: Some(ExposureMode::Address),
                ..Exposure::default()
            }
            .validate()
            .is_err()
        );
    }
}
