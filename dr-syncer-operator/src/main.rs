//! Entry point of `dr-syncer-operator`: the [`dr_syncer_operator::Operator`] builder with nothing added.

/// jemalloc with background purging: the operator's heap swings with every full sync (whole lists of
/// objects, then compact caches), and glibc's malloc keeps most of what was freed resident.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    dr_syncer_operator::Operator::from_env().main()
}
