//! When the faults fire: at random points of the run's progress, each after a random delay.

use std::time::{Duration, Instant};

use gastown_tests::rng::Rng;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    RestartApiServer,
    /// SIGKILL one of the replicas, chosen at random.
    KillRandomReplica,
    /// SIGKILL the Lease holder.
    KillLeader,
}

/// When each fault fires, as a fraction of the run's progress (see `claims::progress`), plus
/// a random delay so kills land at arbitrary points of a reconcile.
fn chaos_schedule(rng: &mut Rng) -> Vec<(f64, Duration, Event)> {
    let events = [
        Event::RestartApiServer,
        Event::KillRandomReplica,
        Event::KillRandomReplica,
        Event::KillRandomReplica,
        Event::KillLeader,
    ];
    let mut schedule: Vec<(f64, Duration, Event)> = events
        .into_iter()
        .map(|e| (rng.range(0.05, 0.85), Duration::from_millis(rng.below(1500) as u64), e))
        .collect();
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    schedule
}

/// The API server restart in flight: when it started, and how it ended.
pub(crate) type Restart = JoinHandle<(Instant, Result<(), String>)>;

/// The faults still to come, the one waiting for its delay, and an API server restart in flight.
#[derive(Default)]
pub(crate) struct Schedule {
    pub(crate) left: Vec<(f64, Duration, Event)>,
    pending: Option<(Instant, Event)>,
    pub(crate) restart: Option<Restart>,
}

impl Schedule {
    /// The run's faults, drawn from `rng` (none for a fault-free run).
    pub(crate) fn new(chaos: bool, rng: &mut Rng) -> Schedule {
        Schedule {
            left: if chaos { chaos_schedule(rng) } else { Vec::new() },
            ..Schedule::default()
        }
    }

    /// The event whose delay is over, if any, once `progress` has reached its point.
    pub(crate) fn due(&mut self, progress: f64) -> Option<Event> {
        if self.pending.is_none() && self.left.first().is_some_and(|(at, _, _)| progress >= *at) {
            let (_, delay, event) = self.left.remove(0);
            self.pending = Some((Instant::now() + delay, event));
        }
        let (_, event) = self.pending.filter(|(at, _)| *at <= Instant::now())?;
        self.pending = None;
        Some(event)
    }

    /// Fires `event` again shortly (every replica was being restarted).
    pub(crate) fn retry_soon(&mut self, event: Event) {
        self.pending = Some((Instant::now() + Duration::from_millis(100), event));
    }

    /// The API server restart, once it has ended.
    pub(crate) fn finished_restart(&mut self) -> Option<Restart> {
        self.restart.take_if(|h| h.is_finished())
    }

    /// Every fault has fired and the restart is over.
    pub(crate) fn is_over(&self) -> bool {
        self.left.is_empty() && self.pending.is_none() && self.restart.is_none()
    }
}
