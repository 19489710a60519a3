//! The one way tsxfer tries again. [`crate::error::decide`] says whether a failure is worth
//! another attempt; [`Retry`] says how often and after which pauses, and cuts a pause
//! short as soon as the operator asks the run to stop. Every phase, the copy pool and the
//! dump use it, so a target restart or a source that refuses connections for a while is
//! outlived the same way everywhere.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::conninfo::ConnInfo;
use crate::pg::{Source, Target};

/// The pause before attempt `attempt + 1`: 0.5 s doubling per attempt, at most 30 s, plus
/// up to half again at random so that workers hit by the same outage do not return at once.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.min(6));
    let base = base.min(Duration::from_secs(30));
    let mut h = RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter)
}

/// Sleeps for `pause`, or less when `drain` is set meanwhile. Returns whether it slept
/// the whole pause.
pub async fn pause(drain: &AtomicBool, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        if drain.load(Ordering::SeqCst) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

/// How a run tries again: `retries` attempts after the first, each after [`backoff`], none
/// once `drain` is set.
#[derive(Clone)]
pub struct Retry {
    pub retries: u32,
    pub drain: Arc<AtomicBool>,
}

impl Retry {
    pub fn new(retries: u32, drain: Arc<AtomicBool>) -> Retry {
        Retry { retries, drain }
    }

    /// Runs `step` until it succeeds, fails in a way not worth retrying, has been tried
    /// `retries` more times, or the operator asks to stop during a pause (an
    /// [`ErrorKind::Interrupted`] error then).
    pub async fn run<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let e = match step().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !e.is_retryable() || attempt >= self.retries {
                return Err(e);
            }
            attempt += 1;
            self.wait(what, &e, attempt).await?;
        }
    }

    /// The pause before attempt `attempt` (counted from 1) after `e`, logged; an
    /// [`ErrorKind::Interrupted`] error when the operator asks to stop meanwhile.
    pub async fn wait(&self, what: &str, e: &Error, attempt: u32) -> Result<()> {
        let p = backoff(attempt);
        warn!(
            "{what}: {e}; trying again in {:.1}s (attempt {} of {})",
            p.as_secs_f64(),
            attempt + 1,
            self.retries + 1
        );
        if pause(&self.drain, p).await {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Interrupted,
                format!(
                    "stopped on request while waiting to try again ({what}: {e}); run the same command again to resume"
                ),
            ))
        }
    }

    /// A target connection, retried while the target is unreachable, starting up or out
    /// of connection slots.
    pub async fn target(&self, info: &ConnInfo, role: &str) -> Result<Target> {
        self.run(&format!("connecting to the target ({role})"), || {
            Target::connect(info, role)
        })
        .await
    }

    /// A source connection, retried the same way.
    pub async fn source(&self, info: &ConnInfo, role: &str) -> Result<Source> {
        self.run(&format!("connecting to the source ({role})"), || {
            Source::connect(info, role)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_half() {
        for attempt in 0..12 {
            let base = Duration::from_millis(500)
                .saturating_mul(1 << attempt.min(6))
                .min(Duration::from_secs(30));
            let d = backoff(attempt);
            assert!(
                d >= base && d <= base + base / 2,
                "attempt {attempt}: {d:?}"
            );
        }
        assert!(backoff(1) < backoff(5));
        assert!(backoff(20) <= Duration::from_secs(45));
    }

    #[tokio::test]
    async fn a_pause_ends_when_the_run_is_asked_to_stop() {
        let drain = Arc::new(AtomicBool::new(false));
        let setter = drain.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            setter.store(true, Ordering::SeqCst);
        });
        let slept = tokio::time::timeout(
            Duration::from_secs(20),
            pause(&drain, Duration::from_secs(30)),
        )
        .await;
        assert_eq!(slept, Ok(false));
        assert!(pause(&AtomicBool::new(false), Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn only_failures_worth_it_are_retried_and_only_so_often() {
        let retry = Retry::new(2, Arc::new(AtomicBool::new(false)));
        let mut calls = 0;
        let r: Result<()> = retry
            .run("a local failure", || {
                calls += 1;
                async { Err(Error::new(ErrorKind::Copy, "no")) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
