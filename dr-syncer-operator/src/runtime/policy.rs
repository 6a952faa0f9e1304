//! What a failed reconcile of a RemoteCluster or a ClusterMapping leads to.

use std::sync::Arc;

use tracing::warn;

use crate::{context::Context, metrics::ReconcileErrorLabels};

/// After a failed reconcile: count it, and retry with the object's exponential backoff.
pub(super) fn error_policy<K>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &crate::error::Error, Arc<Context>) -> kube::runtime::controller::Action
where
    K: kube::Resource<DynamicType = ()>,
{
    move |obj, err, ctx| {
        let key = format!(
            "{controller}:{}/{}",
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default()
        );
        warn!(%controller, object = %key, error = %err, "reconcile failed");
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                controller: controller.into(),
                kind: err.kind().into(),
            })
            .inc();
        kube::runtime::controller::Action::requeue(ctx.backoffs.next(&key))
    }
}
