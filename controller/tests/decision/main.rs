//! Table-driven tests of the controller's pure decisions (`gastown_controller::decision`):
//! Automatons and beads are plain JSON, timestamps are fixed, nothing does I/O.

// A test crate: panicking on a bad fixture is the point.
#![allow(clippy::unwrap_used)]

mod assignee;
mod claim;
mod conditions;
mod deletion;
mod fixtures;
mod stage;
mod state;
mod status_write;
mod sync_closed;
mod sync_dispatched;
mod sync_missing;
mod sync_open;
mod sync_timeout;
mod sync_unreachable;
mod sync_waiting;
