//! Bandwidth limits of the object store traffic (`--upload-limit`, `--download-limit`): a
//! token bucket of bytes per second (governor's GCRA), with a burst of one second's worth (at
//! least one block), that object PUTs and GETs wait on before they go.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// One direction's limit.
pub struct Bandwidth {
    limiter: DefaultDirectRateLimiter,
    /// Largest number of bytes one wait may ask for.
    burst: u32,
}

impl std::fmt::Debug for Bandwidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bandwidth")
            .field("burst", &self.burst)
            .finish()
    }
}

impl Bandwidth {
    /// A limit of `bytes_per_sec` (None for 0: no limit). Rates above 4 GiB/s are taken as
    /// 4 GiB/s.
    pub fn new(bytes_per_sec: u64) -> Option<Self> {
        let rate = NonZeroU32::new(u32::try_from(bytes_per_sec).unwrap_or(u32::MAX))?;
        // a burst of a second's worth, and never less than a block, so one request of a
        // whole block waits at most once
        let burst = rate.max(NonZeroU32::new(8 << 20)?);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::direct(quota),
            burst: burst.get(),
        })
    }

    /// A limit of `mbps` megabits per second, as JuiceFS's flags give it (0: none).
    pub fn from_mbps(mbps: u64) -> Option<Self> {
        Self::new(mbps.saturating_mul(1_000_000) / 8)
    }

    /// Wait until `n` bytes may go.
    pub async fn take(&self, n: usize) {
        let mut left = u64::try_from(n).unwrap_or(u64::MAX);
        while left > 0 {
            let step = left.min(u64::from(self.burst));
            let Some(cells) = NonZeroU32::new(u32::try_from(step).unwrap_or(self.burst)) else {
                return;
            };
            // asking for more than the burst is the only error, and `step` never does
            if self.limiter.until_n_ready(cells).await.is_err() {
                return;
            }
            left -= u64::from(cells.get());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bandwidth;
    use std::time::{Duration, Instant};

    #[test]
    fn zero_means_no_limit() {
        assert!(Bandwidth::new(0).is_none());
        assert!(Bandwidth::from_mbps(0).is_none());
    }

    #[tokio::test]
    async fn bytes_past_the_burst_wait_for_their_share() {
        // 8 MiB/s: the first 8 MiB (the burst) go at once, the next 4 MiB take about 0.5 s
        let b = Bandwidth::new(8 << 20).expect("a limit");
        let t = Instant::now();
        b.take(8 << 20).await;
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        b.take(4 << 20).await;
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }
}
