//! The retry schedule (SPEC §4): pure arithmetic on times, no clock.

use std::time::Duration;

/// When to try again after temporary failures, and when to give up.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Delays after the 1st, 2nd, … failed try; the last repeats.
    pub delays: Vec<Duration>,
    /// No try is scheduled later than this after the decision was queued.
    pub give_up_after: Duration,
    /// How long a full mailbox (5.2.2) stays suppressed (SPEC §11).
    pub mailbox_full_for: Duration,
}

impl RetryPolicy {
    /// The policy of the checked settings.
    pub fn from_config(config: &crate::config::Config) -> RetryPolicy {
        RetryPolicy {
            delays: config.retry_schedule.clone(),
            give_up_after: config.give_up_after,
            mailbox_full_for: config.mailbox_full_for,
        }
    }

    /// The next try's time (micros) after `tries` failed tries, or `None` to give up.
    pub fn next_try(&self, tries: u32, queued_at: i64, now: i64) -> Option<i64> {
        let index = (tries.max(1) as usize - 1).min(self.delays.len().saturating_sub(1));
        let delay = self.delays.get(index)?.as_micros() as i64;
        let next = now + delay;
        let deadline = queued_at + self.give_up_after.as_micros() as i64;
        (next <= deadline).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn spec_default() -> RetryPolicy {
        RetryPolicy {
            delays: [1, 5, 15, 60, 180, 360]
                .iter()
                .map(|m| Duration::from_secs(m * 60))
                .collect(),
            give_up_after: Duration::from_secs(24 * 3600),
            mailbox_full_for: Duration::from_secs(7 * 86_400),
        }
    }

    #[test]
    fn follows_the_default_schedule_then_repeats_the_last_delay() {
        let p = spec_default();
        assert_eq!(p.next_try(1, 0, 0), Some(MIN));
        assert_eq!(p.next_try(2, 0, MIN), Some(6 * MIN));
        assert_eq!(p.next_try(6, 0, 0), Some(360 * MIN));
        assert_eq!(p.next_try(9, 0, 0), Some(360 * MIN));
    }

    #[test]
    fn gives_up_after_the_deadline() {
        let p = spec_default();
        assert_eq!(p.next_try(7, 0, 20 * 60 * MIN), None);
        assert!(p.next_try(7, 0, 17 * 60 * MIN).is_some());
    }
}
