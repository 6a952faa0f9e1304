//! Ingresses: annotation filtering, TLS, and host rewriting for the DR site.

use kube::core::DynamicObject;
use serde_json::Value;

use super::{Outcome, TransformContext, TransformResult, Transformer};

/// Applies `ingressConfig`: with `preserveAnnotations: false` only the keys in `preserveAnnotationsList` (and
/// dr-syncer's own) stay; `preserveTLS: false` removes `spec.tls`; `transformHosts` rewrites every rule and
/// TLS host to its first DNS label + `hostSuffix` (`myapp.example.com` + `-dr.example.com` →
/// `myapp-dr.example.com`). Wildcard hosts (`*.example.com`) are left unchanged: a suffix cannot be
/// appended to `*`. Backends always point at Services of the (mapped) namespace, so they need no change.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngressTransform;

/// `myapp.example.com` + `-dr.example.com` → `myapp-dr.example.com`; wildcards unchanged.
pub(crate) fn rewrite_host(host: &str, suffix: &str) -> String {
    if host.starts_with('*') || host.is_empty() {
        return host.to_owned();
    }
    let first = host.split('.').next().unwrap_or(host);
    format!("{first}{suffix}")
}

impl Transformer for IngressTransform {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "ingress".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        if !ctx.resource.is("networking.k8s.io", "Ingress") {
            return Ok(Outcome::Keep(obj));
        }
        let cfg = &ctx.config.ingress;
        if !cfg.preserve_annotations
            && let Some(ann) = obj.metadata.annotations.as_mut()
        {
            let keep = cfg.preserve_annotations_list.clone().unwrap_or_default();
            ann.retain(|k, _| k.starts_with("dr-syncer.io/") || keep.contains(k));
        }
        let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(Outcome::Keep(obj));
        };
        if !cfg.preserve_tls {
            spec.remove("tls");
        }
        if cfg.transform_hosts
            && let Some(suffix) = cfg.host_suffix.as_deref()
        {
            for rule in spec
                .get_mut("rules")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(host) = rule.get_mut("host")
                    && let Some(h) = host.as_str()
                {
                    *host = Value::String(rewrite_host(h, suffix));
                }
            }
            for tls in spec
                .get_mut("tls")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for host in tls
                    .get_mut("hosts")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(h) = host.as_str() {
                        *host = Value::String(rewrite_host(h, suffix));
                    }
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
    use crate::{api::IngressConfig, config::SyncConfig, transform::test_support::*};

    fn ingress() -> DynamicObject {
        obj(
            "networking.k8s.io/v1",
            "Ingress",
            json!({
                "metadata": {"name": "web", "namespace": "app", "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
                    "dr-syncer.io/synced-by": "dr-syncer/app"
                }},
                "spec": {
                    "tls": [{"hosts": ["shop.example.com", "*.example.com"], "secretName": "tls"}],
                    "rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]
                }
            }),
        )
    }

    fn run(cfg: IngressConfig) -> serde_json::Value {
        let o = ingress();
        let mut ctx = ctx_for(&o);
        ctx.config = Arc::new(SyncConfig {
            ingress: cfg,
            ..SyncConfig::default()
        });
        let Outcome::Keep(o) = IngressTransform.transform(o, &ctx).unwrap() else {
            panic!()
        };
        json_of(&o)
    }

    #[rstest]
    #[case::defaults_keep_everything(IngressConfig::default(), "/metadata/annotations/kubernetes.io~1ingress.class", Some(json!("nginx")))]
    #[case::defaults_keep_tls(IngressConfig::default(), "/spec/tls/0/secretName", Some(json!("tls")))]
    #[case::defaults_keep_hosts(IngressConfig::default(), "/spec/rules/0/host", Some(json!("shop.example.com")))]
    #[case::annotations_filtered(IngressConfig { preserve_annotations: false, ..Default::default() }, "/metadata/annotations/kubernetes.io~1ingress.class", None)]
    #[case::annotation_list_kept(IngressConfig { preserve_annotations: false, preserve_annotations_list: Some(vec!["kubernetes.io/ingress.class".into()]), ..Default::default() }, "/metadata/annotations/kubernetes.io~1ingress.class", Some(json!("nginx")))]
    #[case::own_annotations_kept(IngressConfig { preserve_annotations: false, ..Default::default() }, "/metadata/annotations/dr-syncer.io~1synced-by", Some(json!("dr-syncer/app")))]
    #[case::tls_removed(IngressConfig { preserve_tls: false, ..Default::default() }, "/spec/tls", None)]
    #[case::rule_host_rewritten(IngressConfig { transform_hosts: true, host_suffix: Some("-dr.example.com".into()), ..Default::default() }, "/spec/rules/0/host", Some(json!("shop-dr.example.com")))]
    #[case::tls_host_rewritten(IngressConfig { transform_hosts: true, host_suffix: Some("-dr.example.com".into()), ..Default::default() }, "/spec/tls/0/hosts/0", Some(json!("shop-dr.example.com")))]
    #[case::wildcard_unchanged(IngressConfig { transform_hosts: true, host_suffix: Some("-dr.example.com".into()), ..Default::default() }, "/spec/tls/0/hosts/1", Some(json!("*.example.com")))]
    #[case::backend_unchanged(IngressConfig { transform_hosts: true, host_suffix: Some("-dr.example.com".into()), ..Default::default() }, "/spec/rules/0/http/paths/0/backend/service/name", Some(json!("web")))]
    fn ingresses(#[case] cfg: IngressConfig, #[case] pointer: &str, #[case] want: Option<serde_json::Value>) {
        let out = run(cfg);
        assert_eq!(out.pointer(pointer), want.as_ref(), "{out:#}");
    }

    #[rstest]
    #[case("myapp.example.com", "-dr.example.com", "myapp-dr.example.com")]
    #[case("api", ".dr.example.com", "api.dr.example.com")]
    #[case("*.example.com", "-dr.example.com", "*.example.com")]
    fn host_rewrite(#[case] host: &str, #[case] suffix: &str, #[case] want: &str) {
        assert_eq!(rewrite_host(host, suffix), want);
    }
}
