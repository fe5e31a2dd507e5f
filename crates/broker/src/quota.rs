//! AWS's per-connection rate quotas (publishes per second, bytes per second),
//! off unless configured. Over the publish quota, messages are discarded, as AWS
//! does; over the byte quota, reading pauses until the second is over.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct RateQuota {
    pub publishes_per_second: Option<u32>,
    pub bytes_per_second: Option<u32>,
}

/// A one-second window of counts for one connection.
#[derive(Debug)]
pub struct QuotaWindow {
    quota: RateQuota,
    started: Instant,
    publishes: u32,
    bytes: u64,
}

impl QuotaWindow {
    pub fn new(quota: RateQuota, now: Instant) -> Self {
        Self { quota, started: now, publishes: 0, bytes: 0 }
    }

    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.started) >= Duration::from_secs(1) {
            self.started = now;
            self.publishes = 0;
            self.bytes = 0;
        }
    }

    /// Counts a publish; `false` when it exceeds the publish quota and must be discarded.
    pub fn admit_publish(&mut self, now: Instant) -> bool {
        self.roll(now);
        self.publishes += 1;
        self.quota.publishes_per_second.is_none_or(|limit| self.publishes <= limit)
    }

    /// Counts bytes read; answers how long to pause reading to stay within the byte quota.
    pub fn read(&mut self, bytes: usize, now: Instant) -> Option<Duration> {
        self.roll(now);
        self.bytes += bytes as u64;
        let limit = u64::from(self.quota.bytes_per_second?);
        (self.bytes > limit).then(|| Duration::from_secs(1).saturating_sub(now.duration_since(self.started)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_apply_per_second_and_are_off_by_default() {
        let start = Instant::now();
        let mut unlimited = QuotaWindow::new(RateQuota::default(), start);
        assert!((0..1000).all(|_| unlimited.admit_publish(start)));
        assert_eq!(unlimited.read(10_000_000, start), None);

        let mut limited =
            QuotaWindow::new(RateQuota { publishes_per_second: Some(100), bytes_per_second: Some(1000) }, start);
        assert!((0..100).all(|_| limited.admit_publish(start)));
        assert!(!limited.admit_publish(start), "the 101st publish in a second is discarded");
        assert!(limited.admit_publish(start + Duration::from_secs(1)), "a new second, a new allowance");
        assert_eq!(limited.read(900, start + Duration::from_secs(1)), None);
        let pause = limited.read(200, start + Duration::from_millis(1250)).unwrap();
        assert_eq!(pause, Duration::from_millis(750));
    }
}
