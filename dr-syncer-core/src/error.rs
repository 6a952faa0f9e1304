//! The error type of dr-syncer-core.

/// Result alias with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in dr-syncer-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user's configuration is invalid; retrying will not help until it changes.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A JSON document could not be encoded or decoded.
    #[error("{context}: {source}")]
    Json {
        /// What was being encoded or decoded.
        context: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A short, stable name of the error's category, used as a metric label, an event reason and to choose
    /// exit codes. Never changes for an existing variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidConfig(_) => "InvalidConfig",
            Error::Json { .. } => "Json",
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::InvalidConfig(_) | Error::Json { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(Error::InvalidConfig("x".into()), "InvalidConfig", false)]
    #[case(Error::Json { context: "c".into(), source: serde_json::from_str::<u8>("x").unwrap_err() }, "Json", false)]
    fn kinds_are_stable(#[case] err: Error, #[case] kind: &str, #[case] transient: bool) {
        assert_eq!(err.kind(), kind);
        assert_eq!(err.is_transient(), transient);
        assert!(!err.to_string().is_empty());
    }
}
