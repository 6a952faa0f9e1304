//! Services: the DR cluster allocates its own cluster IPs (and node ports, unless kept).

use kube::core::DynamicObject;
use serde_json::Value;

use super::{Outcome, TransformContext, TransformResult, Transformer};

/// Clears `clusterIP`/`clusterIPs` unless the Service is headless (`None`) or `serviceConfig.preserveClusterIP`
/// is set; clears `nodePort`s and `healthCheckNodePort` unless `serviceConfig.preserveNodePorts` (the
/// default). ExternalName Services are kept as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceTransform;

impl Transformer for ServiceTransform {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "service".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        if !ctx.resource.is("", "Service") {
            return Ok(Outcome::Keep(obj));
        }
        let cfg = &ctx.config.service;
        let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(Outcome::Keep(obj));
        };
        if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            return Ok(Outcome::Keep(obj));
        }
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        if !headless && !cfg.preserve_cluster_ip {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if !cfg.preserve_node_ports {
            spec.remove("healthCheckNodePort");
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                    port.remove("nodePort");
                }
            }
        }
        Ok(Outcome::Keep(obj))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::{api::ServiceConfig, config::SyncConfig, transform::test_support::*};

    fn run(spec: Value, preserve_ip: bool, preserve_ports: bool) -> Value {
        let o = obj("v1", "Service", json!({"spec": spec}));
        let mut ctx = ctx_for(&o);
        ctx.config = Arc::new(SyncConfig {
            service: ServiceConfig {
                preserve_cluster_ip: preserve_ip,
                preserve_node_ports: preserve_ports,
            },
            ..SyncConfig::default()
        });
        let Outcome::Keep(o) = ServiceTransform.transform(o, &ctx).unwrap() else {
            panic!()
        };
        o.data["spec"].clone()
    }

    const CLUSTER_IP: fn() -> Value = || json!({"type": "ClusterIP", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80}]});
    const NODE_PORT: fn() -> Value = || {
        json!({"type": "NodePort", "clusterIP": "10.0.0.6", "clusterIPs": ["10.0.0.6"],
               "ports": [{"port": 80, "nodePort": 30080}], "healthCheckNodePort": 31000})
    };

    #[rstest]
    #[case::cluster_ip_cleared(CLUSTER_IP(), false, true, "/clusterIP", None)]
    #[case::cluster_ips_cleared(CLUSTER_IP(), false, true, "/clusterIPs", None)]
    #[case::cluster_ip_preserved(CLUSTER_IP(), true, true, "/clusterIP", Some(json!("10.0.0.5")))]
    #[case::headless_kept(json!({"clusterIP": "None", "clusterIPs": ["None"]}), false, true, "/clusterIP", Some(json!("None")))]
    #[case::headless_ips_kept(json!({"clusterIP": "None", "clusterIPs": ["None"]}), false, true, "/clusterIPs", Some(json!(["None"])))]
    #[case::node_port_kept_by_default(NODE_PORT(), false, true, "/ports/0/nodePort", Some(json!(30080)))]
    #[case::node_port_cleared(NODE_PORT(), false, false, "/ports/0/nodePort", None)]
    #[case::health_check_port_cleared(NODE_PORT(), false, false, "/healthCheckNodePort", None)]
    #[case::port_itself_kept(NODE_PORT(), false, false, "/ports/0/port", Some(json!(80)))]
    #[case::external_name_kept(json!({"type": "ExternalName", "externalName": "db.example.com"}), false, true, "/externalName", Some(json!("db.example.com")))]
    fn services(
        #[case] spec: Value,
        #[case] preserve_ip: bool,
        #[case] preserve_ports: bool,
        #[case] pointer: &str,
        #[case] want: Option<Value>,
    ) {
        let out = run(spec, preserve_ip, preserve_ports);
        assert_eq!(out.pointer(pointer), want.as_ref(), "{out:#}");
    }
}
