//! The handle store (`FDSTORE=1`): copies the supervisor keeps across
//! generations and passes to every new one after the listeners.

use handoff::restart::supervise;
use handoff::Handle;

/// Most handles kept. A generation gets listeners + store under
/// `LISTEN_FDS`, so this also bounds what a start hands over.
pub(crate) const MAX_STORED: usize = 1024;

#[derive(Debug)]
pub(crate) struct Stored {
    pub name: String,
    pub handle: Handle,
    /// Drop it when its peer hangs up (`FDPOLL=0` turns this off).
    pub poll: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub entries: Vec<Stored>,
}

impl Store {
    /// Adds `handles` under `name`, all or none: over the cap, every one
    /// is closed and the error says so.
    pub(crate) fn add(
        &mut self,
        name: &str,
        handles: Vec<Handle>,
        poll: bool,
    ) -> Result<(), String> {
        if self.entries.len() + handles.len() > MAX_STORED {
            return Err(format!(
                "the store holds {} handle(s); {} more under {name:?} would pass its cap of {MAX_STORED}; refused and closed",
                self.entries.len(),
                handles.len()
            ));
        }
        self.entries
            .extend(handles.into_iter().map(|handle| Stored {
                name: name.to_owned(),
                handle,
                poll,
            }));
        Ok(())
    }

    /// Closes every handle stored under `name`; how many were.
    pub(crate) fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        before - self.entries.len()
    }

    /// Closes the handles whose peer hung up (unless stored with
    /// `FDPOLL=0`); the names of those closed.
    pub(crate) fn drop_hung_up(&mut self) -> Vec<String> {
        let mut gone = Vec::new();
        self.entries.retain(|e| {
            let hung = e.poll && supervise::hung_up(e.handle.borrow());
            if hung {
                gone.push(e.name.clone());
            }
            !hung
        });
        gone
    }

    /// Names and counts, in first-stored order.
    pub(crate) fn summary(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for e in &self.entries {
            match out.iter_mut().find(|(n, _)| *n == e.name) {
                Some((_, c)) => *c += 1,
                None => out.push((e.name.clone(), 1)),
            }
        }
        out
    }
}
