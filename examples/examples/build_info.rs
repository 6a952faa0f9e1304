//! Print the build information an embedding tool would log: `cargo run -p dr-syncer-examples --example build_info`.

fn main() {
    let info = dr_syncer_core::version::build_info("my-platform-tool");
    println!(
        "{}",
        serde_json::to_string_pretty(&info).expect("build info serialises")
    );
}
