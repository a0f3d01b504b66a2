//! Self-contained mode: with `RESTART_SERVER_SELF_CONTAINED=1` there is no
//! supervisor, and `SIGHUP` starts this program again as its own successor
//! (`handoff::restart::handover::start_successor`): the sockets and a
//! fresh doorbell's far end under `LISTEN_FDS`, the successor's `READY=1`
//! awaited. The successor runs the same code as under `handoff serve`: it
//! rings, takes the state and connections, says it is ready; this process
//! then stops. If the successor fails, this one serves on.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use handoff::restart::handover::{start_successor, this_program, Doorbell};
use handoff::BorrowedHandle;
use tokio::sync::Mutex;

use crate::front::Front;
use crate::handover::Answerer;

/// How long the successor may take to say `READY=1` (its handover
/// included).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Upgrade {
    /// The successor serves; this process stops.
    Done,
    /// It did not; the answerer back if it survived, for the next try.
    Failed(Option<Answerer>),
}

pub async fn upgrade(answerer: Answerer, front: &Arc<Mutex<Front>>, label: &str) -> Upgrade {
    let (bell, far) = match Doorbell::new() {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("restart_server[{label}]: upgrade: no doorbell: {e}");
            return Upgrade::Failed(Some(answerer));
        }
    };
    // Copies the blocking thread owns while it starts the successor.
    let named: Vec<(&'static str, OwnedFd)> = front
        .lock()
        .await
        .named()
        .into_iter()
        .filter_map(|(n, b)| b.try_clone_to_owned().ok().map(|o| (n, o)))
        .collect();
    let answering = tokio::spawn(answerer.run(bell));
    let started = tokio::task::spawn_blocking(move || -> handoff::Result<u32> {
        let handles: Vec<(&str, BorrowedHandle<'_>)> = named
            .iter()
            .map(|(n, fd)| (*n, BorrowedHandle::from(fd.as_fd())))
            .collect();
        let child = start_successor(this_program()?, &handles, far.borrow(), READY_TIMEOUT)?;
        // Not waited for: it outlives this process.
        Ok(child.id())
    })
    .await;
    match started {
        Ok(Ok(pid)) => {
            eprintln!("restart_server[{label}]: upgrade: successor pid {pid} serves; stopping");
            Upgrade::Done
        }
        Ok(Err(e)) => {
            eprintln!("restart_server[{label}]: upgrade failed: {e}; serving on");
            // The far end is gone with the successor: the answerer ends
            // at its next ring and comes back.
            Upgrade::Failed(answering.await.ok().flatten())
        }
        Err(e) => {
            eprintln!("restart_server[{label}]: upgrade: {e}; serving on");
            Upgrade::Failed(answering.await.ok().flatten())
        }
    }
}
