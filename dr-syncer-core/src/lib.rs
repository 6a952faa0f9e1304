//! # dr-syncer-core
//!
//! The library behind dr-syncer, a Kubernetes disaster-recovery toolkit that keeps a DR cluster in step with
//! production (objects and PVC data) and runs the DR drill (stage, cutover, failback).
//!
//! The operator, the CLI and the agent are thin compositions of this crate. Its shape is a pipeline of
//! pluggable parts — a `ResourceSource` that reads the production side, pure `Transformer`s that turn each
//! object into its DR form, an `Applier` that writes to the DR side, and a `DataMover` for volume data —
//! driven by the sync engine. `docs/library.md` in the repository walks through the shape with an example.
//!
//! Design decisions:
//! - IO is layered: pure domain code and transformers never hold a client.
//! - One error enum with a stable [`Error::kind`] used for metric labels, events and exit codes.

pub mod activation;
pub mod annotations;
pub mod api;
pub mod apply;
pub mod boundaries;
pub mod brake;
pub mod config;
pub mod data;
pub mod diff;
pub mod engine;
pub mod error;
pub mod failure;
#[cfg(feature = "data")]
pub mod keys;
#[cfg(feature = "client")]
pub mod kube;
pub mod matching;
pub mod object;
#[cfg(feature = "client")]
pub mod ops;
pub mod order;
pub mod plugin;
pub mod pvc;
pub mod rbac;
pub mod resource;
pub mod schedule;
pub mod selection;
pub mod site;
pub mod source;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod transform;
pub mod version;
pub mod watches;

pub use error::{Error, Result};

/// The code blocks of `docs/library.md` run as doc tests, so the guide's example always compiles and passes.
#[cfg(doctest)]
#[doc = include_str!("../../docs/library.md")]
pub struct LibraryGuide;
