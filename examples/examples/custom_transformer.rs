//! A custom transformer in the built-in chain: `cargo run -p dr-syncer-examples --example custom_transformer`.
//!
//! Reads a production Deployment, runs dr-syncer's built-in transformations (metadata sanitised, namespace
//! mapped, DR site quiet) followed by [`RegistryMirror`], and prints the DR object.

use dr_syncer_core::{
    resource::ResourceType,
    transform::{Outcome, TransformContext, Transformer, TransformerChain},
};
use dr_syncer_examples::RegistryMirror;
use kube::core::DynamicObject;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "app", "uid": "1b2c", "resourceVersion": "4711",
            "labels": {"app": "web"}
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.prod.example/shop/web:1.2"}]}
            }
        },
        "status": {"readyReplicas": 3}
    }))?;

    let chain = TransformerChain::builtin().then(RegistryMirror::new(
        "registry.prod.example/",
        "mirror.dr.example/",
    ));
    let ctx = TransformContext::for_test(ResourceType::namespaced(
        "apps",
        "v1",
        "Deployment",
        "deployments",
    ));

    match chain.transform(source, &ctx)? {
        Outcome::Keep(dr) => println!("{}", serde_json::to_string_pretty(&dr)?),
        Outcome::Drop { reason } => println!("not replicated: {reason}"),
    }
    Ok(())
}
