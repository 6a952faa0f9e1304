//! Entry point of `dr-syncer-cli`: the [`dr_syncer_cli::Cli`] builder with nothing added.

/// mimalloc: a first copy allocates and frees a few JSON trees per object; glibc's allocator took about a
/// quarter of the CLI's CPU there, CPU the API server on the same machine could use (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dr_syncer_cli::Cli::from_env().main()
}
