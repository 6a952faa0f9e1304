//! Waiting with a deadline.

use std::{future::Future, time::Duration};

use kube::{Api, Resource, runtime::wait::Condition};
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Poll `check` every 100 ms until it yields `Some`, failing after `timeout`.
///
/// `check` errors end the wait at once; return `Ok(None)` for "not yet".
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watch object `name` until `cond` holds, failing after `timeout`. Returns the object that satisfied it.
pub async fn wait_for_condition<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(
        timeout,
        kube::runtime::wait::await_condition(api.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(e)) => Err(Error::Decode {
            context: format!("watching {name}"),
            message: e.to_string(),
        }),
        Err(_) => Err(Error::Timeout {
            what: format!("condition on {name}"),
            secs: timeout.as_secs_f64(),
        }),
    }
}
