//! The contender under test: `handoff::Channel`, used the way an
//! application would, with `recv_into` and one reused `Message` so that
//! neither side allocates per message.

use std::os::fd::OwnedFd;
use std::process::Stdio;

use handoff::{BorrowedHandle, Channel, Error, Message};

use crate::contender::Contender;
use crate::handles;
use crate::proc::{self, Role};
use crate::workload::{Workload, LAST, MORE};
use crate::Result;

/// The parent's end of a channel.
#[derive(Debug)]
pub struct Parent {
    channel: Channel,
    handles: Vec<BorrowedHandle<'static>>,
    msg: Message,
    child: proc::Child,
}

impl Parent {
    /// Creates a channel pair and starts a handoff child on one end.
    pub fn spawn(work: Workload, pin: bool) -> Result<Parent> {
        let (mine, theirs) = Channel::pair()?;
        let theirs = OwnedFd::from(theirs.into_handle());
        let child = proc::spawn(Role::Handoff, work, Stdio::from(theirs), None, pin)?;
        let handles = handles::borrowed()?
            .into_iter()
            .map(BorrowedHandle::from)
            .collect();
        Ok(Parent {
            channel: mine,
            handles,
            msg: Message::new(),
            child,
        })
    }
}

impl Contender for Parent {
    fn send_fds(&mut self, count: usize, last: bool) -> Result<()> {
        let marker = [if last { LAST } else { MORE }];
        self.channel.send(&marker, &self.handles[..count])?;
        Ok(())
    }

    fn wait_ack(&mut self) -> Result<()> {
        self.channel.recv_into(&mut self.msg)?;
        Ok(())
    }

    fn round_trip(&mut self, with_fd: bool) -> Result<()> {
        let handles = if with_fd { &self.handles[..1] } else { &[] };
        self.channel.send(&[MORE], handles)?;
        self.channel.recv_into(&mut self.msg)?;
        if self.msg.handles.len() != handles.len() {
            return Err(format!("answer with {} handles", self.msg.handles.len()).into());
        }
        // Close the answer's handle now, as the raw baseline does, rather
        // than at the next receive.
        self.msg.handles.clear();
        Ok(())
    }

    fn send_bytes(&mut self, chunk: &[u8]) -> Result<()> {
        self.channel.send(chunk, &[])?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let Parent { channel, child, .. } = *self;
        drop(channel);
        child.wait()
    }
}

/// The child's loop: does `work` on `channel` until the parent hangs up.
pub fn serve(channel: Channel, work: Workload) -> Result<()> {
    let own: Vec<BorrowedHandle<'static>> = handles::borrowed()?
        .into_iter()
        .map(BorrowedHandle::from)
        .collect();
    let mut msg = Message::new();
    let mut got = 0u64;
    loop {
        match channel.recv_into(&mut msg) {
            Ok(()) => {}
            Err(Error::Disconnected { .. }) if got == 0 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        match work {
            Workload::Fds => {
                msg.handles.clear();
                if msg.bytes.first() == Some(&LAST) {
                    channel.send(&[LAST], &[])?;
                }
            }
            Workload::Echo { with_fd } => {
                let fds = msg.handles.len();
                if with_fd != (fds == 1) {
                    return Err(
                        format!("ping with {fds} handles, expected with_fd={with_fd}").into(),
                    );
                }
                msg.handles.clear();
                channel.send(&msg.bytes, if with_fd { &own[..1] } else { &[] })?;
            }
            Workload::Bulk { total, .. } => {
                got += msg.bytes.len() as u64;
                if got >= total {
                    got = 0;
                    channel.send(&[LAST], &[])?;
                }
            }
        }
    }
}
