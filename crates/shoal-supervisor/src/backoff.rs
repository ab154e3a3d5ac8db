//! How long to wait before restarting an instance that exited.

use std::time::Duration;

/// Exponential backoff: the first restart waits `initial`, each further consecutive one waits
/// `factor` times longer, up to `max`. A run that lasted at least `stable_after` resets the
/// sequence, so a process that crashes once a day restarts at once every time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before restart number `attempt` (0-based) of a run of consecutive crashes.
    pub fn delay(&self, attempt: u32) -> Duration {
        let scaled = self.initial.as_secs_f64() * self.factor.powi(attempt.min(64) as i32);
        Duration::from_secs_f64(scaled.min(self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::default();
        let ms: Vec<u128> = (0..12).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(
            ms,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }
}
