//! The Kubernetes implementations of the IO traits, on kube-rs (feature `client`, on by default).
//!
//! - [`connect`]: clients from a kubeconfig file, kubeconfig bytes (e.g. from a Secret) or the
//!   environment, with a context, and client-side limits ([`ClientOptions`]: requests per second, burst,
//!   requests in flight, retries of 429/5xx/timeouts with exponential backoff and jitter).
//! - [`discover`]: the server's resource types (discovery), for [`crate::selection`].
//! - [`KubeSource`]: a [`crate::source::ResourceSource`] that lists and watches dynamic types.
//! - [`KubeApplier`]: an [`crate::apply::Applier`] with server-side apply (field manager `dr-syncer`),
//!   no-op detection against a cache of the live DR objects, and the immutable-field policies.

mod applier;
mod calls;
mod client;
mod discovery;
pub(crate) mod dynamic;
pub mod kubeconfig;
mod leftovers;
mod ownership;
pub mod site;
mod source;

pub use self::{
    applier::KubeApplier,
    calls::{
        CallStats, Calls, RetryPolicy, TimedOut, category_of, is_already_exists, is_not_found, is_retryable,
        is_timed_out, is_unserved, retry_after,
    },
    client::{
        CONNECT_TIMEOUT, ClientOptions, ClusterConfig, DEFAULT_REQUEST_TIMEOUT, KubeconfigSource,
        REQUEST_BACKSTOP, connect, connect_bounded, connect_with_url, default_user_agent,
    },
    discovery::{custom_resource_types, discover},
    leftovers::{Leftover, find_leftovers, remove_leftovers},
    source::{KubeSource, selector_string},
};

/// kube-rs's client, re-exported for callers that only hand clients around.
pub use ::kube::Client;

/// The field manager of every server-side apply dr-syncer makes.
pub const FIELD_MANAGER: &str = "dr-syncer";

/// The field manager of activation writes and site marks (drills, promote, fence).
pub const DRILL_FIELD_MANAGER: &str = "dr-syncer-drill";
