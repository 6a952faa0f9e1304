//! What a builder of the bundled binaries (`dr_syncer_operator::Operator`, `dr_syncer_cli::Cli`) adds to
//! them: transformers after the built-in chain, and a hook on the PVC data path.

#[cfg(feature = "data")]
use std::sync::Arc;

#[cfg(feature = "data")]
use super::{PvcDataSync, VolumeSync, VolumeSyncHook};
use crate::transform::{Transformer, TransformerChain};

/// The additions of a builder; empty for the bundled binaries.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    transformers: TransformerChain,
    #[cfg(feature = "data")]
    volume_sync: Option<VolumeSyncHook>,
}

impl Extensions {
    /// Run `transformer` after the built-in transformers (and a mapping's `transformRules`), before
    /// plugins; several run in the order added.
    pub fn add_transformer(&mut self, transformer: impl Transformer + 'static) {
        self.transformers = std::mem::take(&mut self.transformers).with(transformer);
    }

    /// Copy PVC data with what `hook` makes of the built-in data path (feature `data`).
    #[cfg(feature = "data")]
    pub fn set_volume_sync(
        &mut self,
        hook: impl Fn(PvcDataSync) -> Arc<dyn VolumeSync> + Send + Sync + 'static,
    ) {
        self.volume_sync = Some(VolumeSyncHook::new(hook));
    }

    /// The transformer chain of a forward sync: the built-in one, then the added transformers.
    pub fn chain(&self) -> TransformerChain {
        TransformerChain::builtin().with(self.transformers.clone())
    }

    /// The mover for `built_in` (the built-in data path as configured for a mapping or a drill).
    #[cfg(feature = "data")]
    pub fn mover(&self, built_in: PvcDataSync) -> Arc<dyn VolumeSync> {
        VolumeSyncHook::mover(self.volume_sync.as_ref(), built_in)
    }
}
