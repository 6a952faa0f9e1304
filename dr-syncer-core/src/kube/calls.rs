//! Every API request dr-syncer makes goes through [`Calls`]: client-side rate and concurrency limits, a
//! deadline per attempt (a stalled cluster fails the request instead of hanging it), and retries of
//! transient failures with exponential backoff and jitter (a 429's `Retry-After` is honoured).

pub use crate::error::kube_api::{
    TimedOut, category_of, is_already_exists, is_not_found, is_retryable, is_timed_out, is_unserved,
    retry_after,
};
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tracing::debug;

/// When and how often a failed request is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of a delay.
    pub max_backoff: Duration,
    /// Growth factor per retry.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Default::default()
        }
    }

    /// The delay before retry number `attempt` (0-based): exponential, capped, with "equal jitter"
    /// (between half and all of the exponential value) so that many clients do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(attempt as i32);
        let capped = exp.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5))
    }
}

/// A token bucket: `qps` requests per second on average, bursts up to `burst`.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Take a token, or say how long to wait for one.
    fn take(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.qps))
        }
    }
}

/// Limits and retries shared by every request to one cluster (cheap to clone).
#[derive(Debug, Clone)]
pub struct Calls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    in_flight: Semaphore,
    bucket: Option<Mutex<Bucket>>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    retries: AtomicU64,
    throttled: AtomicU64,
    timeouts: AtomicU64,
}

/// What the requests through one [`Calls`] met so far (monotonic counters, for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Attempts retried after a transient failure.
    pub retries: u64,
    /// Responses `429 Too Many Requests` (the server throttling us).
    pub throttled: u64,
    /// Attempts that did not answer within the deadline.
    pub timeouts: u64,
}

impl Calls {
    /// At most `max_in_flight` requests at once, `qps` per second (bursts of `burst`; `None`: unlimited),
    /// transient failures retried per `retry`.
    pub fn new(max_in_flight: usize, qps: Option<f64>, burst: u32, retry: RetryPolicy) -> Self {
        Self::with_timeout(max_in_flight, qps, burst, retry, None)
    }

    /// As [`Calls::new`], each attempt failing with [`TimedOut`] when it has not answered within `timeout`.
    pub fn with_timeout(
        max_in_flight: usize,
        qps: Option<f64>,
        burst: u32,
        retry: RetryPolicy,
        timeout: Option<Duration>,
    ) -> Self {
        Calls {
            inner: Arc::new(Inner {
                in_flight: Semaphore::new(max_in_flight.max(1)),
                // Below one request per 1000 s the bucket's wait would overflow; treat it as that floor.
                bucket: qps.filter(|q| *q > 0.0).map(|qps| qps.max(0.001)).map(|qps| {
                    let burst = f64::from(burst.max(1));
                    Mutex::new(Bucket {
                        qps,
                        burst,
                        tokens: burst,
                        last: Instant::now(),
                    })
                }),
                retry,
                timeout: timeout.filter(|t| !t.is_zero()),
                retries: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
            }),
        }
    }

    /// The deadline of one attempt, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    /// Counters of retries and throttling so far.
    pub fn stats(&self) -> CallStats {
        CallStats {
            retries: self.inner.retries.load(Ordering::Relaxed),
            throttled: self.inner.throttled.load(Ordering::Relaxed),
            timeouts: self.inner.timeouts.load(Ordering::Relaxed),
        }
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    async fn permit(&self) -> SemaphorePermit<'_> {
        if let Some(bucket) = &self.inner.bucket {
            loop {
                let wait = bucket.lock().await.take();
                match wait {
                    None => break,
                    Some(d) => tokio::time::sleep(d).await,
                }
            }
        }
        // The semaphore is never closed.
        self.inner
            .in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"))
    }

    /// Run one request once within the limits and the deadline (no retry: the caller has its own policy).
    pub async fn run_once<T, F, Fut>(&self, op: F) -> Result<T, kube::Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let _permit = self.permit().await;
        self.bounded("request", op()).await
    }

    /// `fut`, failing with [`TimedOut`] after the deadline.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        let Some(after) = self.inner.timeout else {
            return fut.await;
        };
        match tokio::time::timeout(after, fut).await {
            Ok(r) => r,
            Err(_) => {
                self.inner.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(kube::Error::Service(Box::new(TimedOut {
                    what: what.to_owned(),
                    after,
                })))
            }
        }
    }

    /// Run one request (`op` is called once per attempt) within the limits, retrying transient failures.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = self.permit().await;
                self.bounded(what, op()).await
            };
            if let Err(kube::Error::Api(s)) = &result
                && s.code == 429
            {
                self.inner.throttled.fetch_add(1, Ordering::Relaxed);
            }
            match result {
                Err(e) if attempt < self.inner.retry.max_retries && is_retryable(&e) => {
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                    // The server's own `Retry-After` (429, 503) wins over our backoff, within reason.
                    let delay = retry_after(&e)
                        .map(|d| d.min(Duration::from_secs(60)))
                        .unwrap_or_else(|| self.inner.retry.delay(attempt));
                    debug!(what, attempt, ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use kube::core::Status;
    use rstest::rstest;

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            ..Default::default()
        }))
    }

    #[rstest]
    #[case(429, true)]
    #[case(500, true)]
    #[case(502, true)]
    #[case(503, true)]
    #[case(504, true)]
    #[case(400, false)]
    #[case(403, false)]
    #[case(404, false)]
    #[case(409, false)]
    #[case(422, false)]
    fn retryable_statuses(#[case] code: u16, #[case] retryable: bool) {
        assert_eq!(is_retryable(&api(code)), retryable);
    }

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        };
        for attempt in 0..10 {
            let exp = (0.1 * 2f64.powi(attempt as i32)).min(1.0);
            let d = p.delay(attempt).as_secs_f64();
            assert!(d >= exp * 0.5 - 1e-9 && d <= exp + 1e-9, "attempt {attempt}: {d}");
        }
        let samples: std::collections::BTreeSet<u128> = (0..20).map(|_| p.delay(3).as_micros()).collect();
        assert!(samples.len() > 1, "no jitter");
    }

    fn fast(max_retries: u32) -> Calls {
        Calls::new(
            4,
            None,
            1,
            RetryPolicy {
                max_retries,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
                multiplier: 2.0,
            },
        )
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let attempts = AtomicU32::new(0);
        let calls = fast(5);
        let r = calls
            .run("get x", || async {
                match attempts.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(api(503)),
                    1 => Err(api(429)),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(
            calls.stats(),
            CallStats {
                retries: 2,
                throttled: 1,
                timeouts: 0
            }
        );
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let attempts = AtomicU32::new(0);
        let r: Result<(), _> = fast(5)
            .run("get x", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(api(422))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let attempts = AtomicU32::new(0);
        let r: Result<(), _> = fast(3)
            .run("get x", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(api(500))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_requests() {
        let calls = Calls::new(16, Some(10.0), 2, RetryPolicy::none());
        let start = tokio::time::Instant::now();
        for _ in 0..6 {
            calls
                .run("x", || async { Ok::<_, kube::Error>(()) })
                .await
                .unwrap();
        }
        // 2 from the burst, then 4 more at 10/s: at least 0.4 s (virtual time).
        assert!(
            start.elapsed() >= Duration::from_millis(390),
            "{:?}",
            start.elapsed()
        );
    }

    /// An attempt that never answers fails at the deadline and is retried; a stalled server therefore
    /// fails the request after (retries + 1) deadlines plus the backoffs, not never.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_times_out_and_is_retried_a_bounded_number_of_times() {
        let calls = Calls::with_timeout(
            4,
            None,
            1,
            RetryPolicy {
                max_retries: 2,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(100),
                multiplier: 1.0,
            },
            Some(Duration::from_secs(5)),
        );
        let attempts = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = calls
            .run("get stalled", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<(), kube::Error>>().await
            })
            .await;
        let err = r.unwrap_err();
        assert!(is_timed_out(&err), "{err}");
        assert!(err.to_string().contains("timed out after 5s"), "{err}");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(calls.stats().timeouts, 3);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(15) && took < Duration::from_secs(16),
            "{took:?}"
        );
        assert_eq!(category_of(&err), crate::failure::FailureCategory::NetworkError);
    }

    /// A 429 with `Retry-After` waits as long as the server asks (not our shorter backoff).
    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let calls = fast(1);
        let attempts = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r = calls
            .run("create x", || async {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(kube::Error::Api(Box::new(Status {
                        code: 429,
                        details: Some(
                            serde_json::from_value(serde_json::json!({"retryAfterSeconds": 3})).unwrap(),
                        ),
                        ..Default::default()
                    })))
                } else {
                    Ok(1)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 1);
        assert!(start.elapsed() >= Duration::from_secs(3), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let calls = Calls::new(2, None, 1, RetryPolicy::none());
        let now = AtomicU32::new(0);
        let peak = AtomicU32::new(0);
        let tasks = (0..8).map(|_| {
            calls.run("x", || async {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, kube::Error>(())
            })
        });
        futures::future::join_all(tasks).await;
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
