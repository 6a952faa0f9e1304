//! Entry point of `dr-syncer-operator`: the [`dr_syncer_operator::Operator`] builder with nothing added.

fn main() -> std::process::ExitCode {
    dr_syncer_operator::Operator::from_env().main()
}
