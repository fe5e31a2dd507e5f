//! Whether this node is part of its cluster, judged the way its peers judge it: by
//! its heartbeats coming through NATS. A node that stops hearing its own steps
//! down (its peers are about to count it dead and take its sessions); once it hears
//! itself again for long enough that any peer's taking is done, it rejoins. Pure:
//! time is passed in.

use std::time::{Duration, Instant};

/// Silence after which a node steps down: shorter than the silence after which its
/// peers take its sessions, so it lets go of them first.
pub(crate) const STEP_DOWN_AFTER: Duration = Duration::from_secs(2);

/// What the node must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Move {
    /// Let every connection and session go, without touching the store.
    StepDown,
    /// Load the sessions still stored as this node's and serve again.
    Rejoin,
}

pub(crate) struct Standing {
    /// How long the node must hear itself again before it rejoins: a peer that
    /// counted it dead has taken its sessions by then.
    rejoin_after: Duration,
    heard_self: Instant,
    stepped_down: bool,
    /// While stepped down: since when its heartbeats come through again.
    back_since: Option<Instant>,
}

impl Standing {
    pub(crate) fn new(now: Instant, rejoin_after: Duration) -> Self {
        Self { rejoin_after, heard_self: now, stepped_down: false, back_since: None }
    }

    /// This node's own heartbeat came back through NATS.
    pub(crate) fn heard_self(&mut self, now: Instant) {
        if self.stepped_down && self.back_since.is_none() {
            self.back_since = Some(now);
        }
        self.heard_self = now;
    }

    /// Called every heartbeat.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<Move> {
        let silent = now.saturating_duration_since(self.heard_self) >= STEP_DOWN_AFTER;
        if silent {
            self.back_since = None;
            if !self.stepped_down {
                self.stepped_down = true;
                return Some(Move::StepDown);
            }
            return None;
        }
        match self.back_since {
            Some(since) if self.stepped_down && now.saturating_duration_since(since) >= self.rejoin_after => {
                self.stepped_down = false;
                self.back_since = None;
                Some(Move::Rejoin)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REJOIN: Duration = Duration::from_secs(4);

    fn at(start: Instant, secs: f64) -> Instant {
        start + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_node_that_hears_itself_keeps_serving() {
        let t0 = Instant::now();
        let mut standing = Standing::new(t0, REJOIN);
        for second in 1..10 {
            standing.heard_self(at(t0, second as f64));
            assert_eq!(standing.tick(at(t0, second as f64 + 0.5)), None);
        }
    }

    #[test]
    fn silence_steps_down_once_and_hearing_itself_long_enough_rejoins() {
        let t0 = Instant::now();
        let mut standing = Standing::new(t0, REJOIN);
        assert_eq!(standing.tick(at(t0, 1.9)), None, "one late heartbeat is not silence");
        assert_eq!(standing.tick(at(t0, 2.0)), Some(Move::StepDown));
        assert_eq!(standing.tick(at(t0, 5.0)), None, "stepped down once");
        for second in 6..=9 {
            standing.heard_self(at(t0, second as f64));
            assert_eq!(standing.tick(at(t0, second as f64 + 0.5)), None, "not back for long enough");
        }
        assert_eq!(standing.tick(at(t0, 10.0)), Some(Move::Rejoin));
    }

    #[test]
    fn cut_off_again_before_rejoining_starts_the_wait_over() {
        let t0 = Instant::now();
        let mut standing = Standing::new(t0, REJOIN);
        assert_eq!(standing.tick(at(t0, 2.5)), Some(Move::StepDown));
        standing.heard_self(at(t0, 3.0));
        assert_eq!(standing.tick(at(t0, 5.5)), None, "silent again");
        standing.heard_self(at(t0, 6.0));
        standing.heard_self(at(t0, 8.0));
        assert_eq!(standing.tick(at(t0, 8.5)), None, "back since 6 s only");
        standing.heard_self(at(t0, 10.0));
        assert_eq!(standing.tick(at(t0, 10.0)), Some(Move::Rejoin));
    }
}
