//! A platform's own operator: the bundled dr-syncer operator, with every flag, endpoint and controller,
//! plus the [`RegistryMirror`] transformer in every mapping's sync (DR pulls from a mirror in its region).
//!
//! ```sh
//! MIRROR_FROM=registry.prod.example/ MIRROR_TO=mirror.dr.example/ \
//!   cargo run -p dr-syncer-examples --example custom_operator -- --kubeconfig controller.kubeconfig
//! ```
//!
//! With `--once` it syncs each NamespaceMapping once and exits (1 if one failed): that is how
//! `examples/tests/custom_operator.rs` runs it against test control planes.

use dr_syncer_examples::RegistryMirror;
use dr_syncer_operator::Operator;

fn main() -> std::process::ExitCode {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mirror = RegistryMirror::new(
        var("MIRROR_FROM", "registry.prod.example/"),
        var("MIRROR_TO", "mirror.dr.example/"),
    );
    Operator::from_env().with_transformer(mirror).main()
}
