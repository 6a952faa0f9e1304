//! Examples of using `dr-syncer-core` as a library; run one with
//! `cargo run -p dr-syncer-examples --example <name>`. Manifests for the custom resources live next to
//! this crate in `examples/manifests/`.
