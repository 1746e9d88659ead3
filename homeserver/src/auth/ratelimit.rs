//! A leaky-bucket limiter for failed attempts, keyed by user or address.
//!
//! Hand-written rather than `governor`: failed logins must be *checked* before
//! the password is verified but *charged* only when it proves wrong, and
//! governor's keyed limiter charges on every check.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Above this many keys, empty buckets are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// Allows `burst` charges at once; each `refill` period forgives one.
pub struct FailureLimiter {
    burst: f64,
    refill: Duration,
    // A std mutex: the critical section is a map lookup and never awaits.
    levels: Mutex<HashMap<String, (f64, Instant)>>,
}

impl FailureLimiter {
    /// A limiter allowing `burst` charges, one more every `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst: f64::from(burst),
            refill,
            levels: Mutex::new(HashMap::new()),
        }
    }

    fn drained(&self, level: f64, since: Instant, now: Instant) -> f64 {
        let forgiven = now.duration_since(since).as_secs_f64() / self.refill.as_secs_f64();
        (level - forgiven).max(0.0)
    }

    /// `Err(wait)` when the key has used its budget.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&(level, since)) = levels.get(key) else {
            return Ok(());
        };
        let level = self.drained(level, since, now);
        if level + 1.0 > self.burst {
            let wait = (level + 1.0 - self.burst) * self.refill.as_secs_f64();
            Err(Duration::from_secs_f64(wait))
        } else {
            Ok(())
        }
    }

    /// Counts one attempt against the key.
    pub fn charge(&self, key: &str) {
        let now = Instant::now();
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        if levels.len() > PRUNE_ABOVE {
            levels.retain(|_, (level, since)| self.drained(*level, *since, now) > 0.0);
        }
        let entry = levels.entry(key.to_owned()).or_insert((0.0, now));
        *entry = (self.drained(entry.0, entry.1, now) + 1.0, now);
    }

    /// `check` then `charge`, for limits on every attempt.
    pub fn check_and_charge(&self, key: &str) -> Result<(), Duration> {
        self.check(key)?;
        self.charge(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_burst_and_recovers() {
        let limiter = FailureLimiter::new(2, Duration::from_millis(50));
        assert!(limiter.check("a").is_ok());
        limiter.charge("a");
        limiter.charge("a");
        let wait = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(50),
            "{wait:?}"
        );
        assert!(limiter.check("b").is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            limiter.check("a").is_ok(),
            "one failure forgiven after a refill period"
        );
    }

    #[test]
    fn check_and_charge_counts_every_attempt() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check_and_charge("ip").is_ok());
        }
        assert!(limiter.check_and_charge("ip").is_err());
    }
}
