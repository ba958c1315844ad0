//! The scheduler's clock, injectable so that tests can move time instead of sleeping.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Signals when time jumps (a manual clock); `None` for a clock that only flows.
    fn jumps(&self) -> Option<watch::Receiver<()>> {
        None
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that flows with the system clock from a chosen offset, and jumps when told to:
/// tests start it at a fixed instant and `advance` it by hours in a moment.
pub struct ManualClock {
    offset: Mutex<SignedDuration>,
    jumped: watch::Sender<()>,
}

impl ManualClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            offset: Mutex::new(start.duration_since(Timestamp::now())),
            jumped: watch::channel(()).0,
        }
    }

    pub fn advance(&self, by: SignedDuration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
        self.jumped.send_replace(());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        Timestamp::now()
            .checked_add(offset)
            .unwrap_or(Timestamp::MAX)
    }

    fn jumps(&self) -> Option<watch::Receiver<()>> {
        Some(self.jumped.subscribe())
    }
}
