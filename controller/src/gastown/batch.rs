//! Bead reads batched into one `bd show --json -- <id>...`.
//!
//! Every active Automaton is read back once per sync interval; one command (or proxy request,
//! rate-limited per client) per read would cap how many claims fit into an interval. Reads that
//! arrive within a short window share one command.
//!
//! Real `bd show` of several IDs (beads `cmd/bd/show.go`, since v0.50.0) prints the beads it
//! found, names each unknown ID on stderr (`Error fetching <id>: ...`) and exits non-zero only
//! when it found none (older versions exit 0 with empty output). So a bead missing from the
//! answer, or a batch answered with a non-zero exit or unreadable output, is read on its own
//! with [`GasTown::show_bead`], which tells "no such bead" from a failure. A batch that got no
//! answer (timeout, unreachable, refused) fails all its reads at once: reading each on its own
//! would wait for the same hung Gas Town once per bead.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Bead, BeadId, Error, GasTown};

type Reply = oneshot::Sender<Result<Option<Bead>, Error>>;

/// Reads beads, batching the reads that arrive close together. Cheap to clone.
#[derive(Clone)]
pub struct BatchedReader {
    gastown: GasTown,
    requests: mpsc::UnboundedSender<(BeadId, Reply)>,
}

impl BatchedReader {
    /// Starts the batching task (on the current Tokio runtime): reads that arrive within
    /// `window` of the first are answered together, at most `max_batch` per command.
    pub fn spawn(gastown: GasTown, window: Duration, max_batch: usize) -> BatchedReader {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(gastown.clone(), rx, window, max_batch.max(1)));
        BatchedReader { gastown, requests }
    }

    /// Reads one bead, like [`GasTown::show_bead`]: `Ok(None)` when it does not exist.
    pub async fn show(&self, id: &BeadId) -> Result<Option<Bead>, Error> {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((id.clone(), reply)).is_err() {
            return self.gastown.show_bead(id).await;
        }
        match answer.await {
            Ok(result) => result,
            // The batching task is gone (runtime shutting down): read directly.
            Err(_) => self.gastown.show_bead(id).await,
        }
    }
}

async fn collect(
    gastown: GasTown,
    mut rx: mpsc::UnboundedReceiver<(BeadId, Reply)>,
    window: Duration,
    max_batch: usize,
) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + window;
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(request)) => batch.push(request),
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(answer(gastown.clone(), batch));
    }
}

async fn answer(gastown: GasTown, batch: Vec<(BeadId, Reply)>) {
    let mut ids: Vec<BeadId> = batch.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    let found = if ids.len() > 1 {
        match gastown.show_beads(&ids).await {
            Ok(found) => found,
            Err(e) if answered(&e) => {
                tracing::debug!(error = %e, beads = ids.len(), "batched bd show failed; reading the beads one by one");
                HashMap::new()
            }
            Err(e) => {
                tracing::debug!(error = %e, beads = ids.len(), "batched bd show got no answer; failing its reads");
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
        }
    } else {
        HashMap::new()
    };
    let singles = batch.into_iter().map(|(id, reply)| {
        let gastown = gastown.clone();
        let known = found.get(id.as_str()).cloned();
        async move {
            let result = match known {
                Some(bead) => Ok(Some(bead)),
                None => gastown.show_bead(&id).await,
            };
            let _ = reply.send(result);
        }
    });
    futures::future::join_all(singles).await;
}

/// Whether `bd` answered the batch (it ran to its end with a non-zero exit, or printed output
/// that does not parse as a whole): each bead is then worth asking about on its own. Anything
/// else (timeout, a command killed by a signal or by gt-proxy-server at its limit, transport,
/// TLS, HTTP status, missing binary) is Gas Town not answering, which one read per bead would
/// only repeat.
fn answered(error: &Error) -> bool {
    match error {
        Error::Exit { code, .. } => matches!(code, Some(1..=128)),
        Error::Parse { .. } => true,
        _ => false,
    }
}
