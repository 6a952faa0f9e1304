//! Benchmarks of dr-syncer live in `benches/`; this library is empty.
