//! The comparison: servo's ipc-channel 0.23, through its public `ipc` API.
//!
//! ipc-channel carries only two kinds of handle: its own channel ends
//! (sockets) and shared memory, and its receiver maps every non-socket
//! handle it gets as shared memory. Its channel ends are therefore the
//! closest it has to "any handle": the handle benchmarks send clones of one
//! sender, which the kernel duplicates per message just as it duplicates
//! the `/dev/null` descriptors the other contenders send. It cannot send
//! more than 64 handles in one message.
//!
//! Bytes go through `IpcBytesSender`, ipc-channel's fastest path (no
//! serialisation); handles through `IpcSender<FdMessage>`.

use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcSender,
    OpaqueIpcSender,
};
use ipc_channel::IpcError;
use serde::{Deserialize, Serialize};

use crate::contender::Contender;
use crate::proc::{self, Role};
use crate::workload::{Workload, LAST, MORE};
use crate::Result;

/// The most handles ipc-channel sends in one message.
pub const MAX_HANDLES: usize = 64;

/// The four channel ends the child creates and sends to the parent through
/// the one-shot server (ipc-channel's channels are one-way).
#[derive(Serialize, Deserialize)]
struct Link {
    bytes_to_child: IpcBytesSender,
    bytes_to_parent: IpcBytesReceiver,
    fds_to_child: IpcSender<FdMessage>,
    fds_to_parent: IpcReceiver<FdMessage>,
}

/// A message with handles: the batch marker and the handles.
#[derive(Serialize, Deserialize)]
struct FdMessage {
    marker: u8,
    fds: Vec<OpaqueIpcSender>,
}

/// The parent's ends of the link.
pub struct Parent {
    link: Link,
    handles: Vec<OpaqueIpcSender>,
    /// Keeps the channel whose sender is being sent alive, so the handles
    /// sent are ordinary connected sockets.
    _peer: IpcReceiver<()>,
    child: proc::Child,
}

impl std::fmt::Debug for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent")
            .field("child", &self.child)
            .finish()
    }
}

impl Parent {
    /// Starts an ipc-channel child and accepts its connection.
    pub fn spawn(work: Workload, pin: bool) -> Result<Parent> {
        let (server, name) = IpcOneShotServer::<Link>::new()?;
        let mut child = proc::spawn(Role::IpcChannel, work, Stdio::null(), Some(&name), pin)?;
        let link = accept_while_alive(server, || child.has_exited())?;
        let (sender, peer) = ipc::channel::<()>()?;
        let handles = vec![sender.to_opaque(); MAX_HANDLES];
        Ok(Parent {
            link,
            handles,
            _peer: peer,
            child,
        })
    }
}

/// Accepts the child's connection, unless the child dies first (asked of
/// `has_exited` while waiting): the one-shot server's `accept` has no
/// timeout, so it runs on a thread that is abandoned (blocked, harmless)
/// if the child never connects.
pub fn accept_while_alive<T>(
    server: IpcOneShotServer<T>,
    mut has_exited: impl FnMut() -> Result<bool>,
) -> Result<T>
where
    T: for<'de> serde::Deserialize<'de> + serde::Serialize + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.accept().map(|(_, value)| value));
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(accepted) => return Ok(accepted?),
            Err(mpsc::RecvTimeoutError::Timeout) if has_exited()? => {
                return Err("ipc-channel child exited before connecting".into())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("accept thread died".into()),
        }
    }
}

impl Contender for Parent {
    fn send_fds(&mut self, count: usize, last: bool) -> Result<()> {
        let fds = self
            .handles
            .get(..count)
            .ok_or("ipc-channel sends at most 64 handles per message")?
            .to_vec();
        let marker = if last { LAST } else { MORE };
        self.link.fds_to_child.send(FdMessage { marker, fds })?;
        Ok(())
    }

    fn wait_ack(&mut self) -> Result<()> {
        self.link.bytes_to_parent.recv()?;
        Ok(())
    }

    fn round_trip(&mut self, with_fd: bool) -> Result<()> {
        if with_fd {
            let fds = vec![self.handles[0].clone()];
            self.link
                .fds_to_child
                .send(FdMessage { marker: MORE, fds })?;
            let answer = self.link.fds_to_parent.recv()?;
            if answer.fds.len() != 1 {
                return Err(format!("answer with {} handles", answer.fds.len()).into());
            }
        } else {
            self.link.bytes_to_child.send(&[MORE])?;
            self.link.bytes_to_parent.recv()?;
        }
        Ok(())
    }

    fn send_bytes(&mut self, chunk: &[u8]) -> Result<()> {
        self.link.bytes_to_child.send(chunk)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let Parent { link, child, .. } = *self;
        drop(link);
        child.wait()
    }
}

/// The child's loop: connects to the parent's one-shot server `name`, then
/// does `work` until the parent hangs up.
pub fn serve(name: String, work: Workload) -> Result<()> {
    let bootstrap = IpcSender::<Link>::connect(name)?;
    let (bytes_to_child, bytes_in) = ipc::bytes_channel()?;
    let (bytes_out, bytes_to_parent) = ipc::bytes_channel()?;
    let (fds_to_child, fds_in) = ipc::channel::<FdMessage>()?;
    let (fds_out, fds_to_parent) = ipc::channel::<FdMessage>()?;
    bootstrap.send(Link {
        bytes_to_child,
        bytes_to_parent,
        fds_to_child,
        fds_to_parent,
    })?;
    drop(bootstrap);
    let (own, _peer) = ipc::channel::<()>()?;
    let own = own.to_opaque();

    match work {
        Workload::Fds => loop {
            let Some(msg) = until_hangup(fds_in.recv())? else {
                return Ok(());
            };
            let last = msg.marker == LAST;
            // Dropping the message closes every handle it brought.
            drop(msg);
            if last {
                bytes_out.send(&[LAST])?;
            }
        },
        Workload::Echo { with_fd: true } => loop {
            let Some(msg) = until_hangup(fds_in.recv())? else {
                return Ok(());
            };
            if msg.fds.len() != 1 {
                return Err(format!("ping with {} handles", msg.fds.len()).into());
            }
            drop(msg);
            fds_out.send(FdMessage {
                marker: MORE,
                fds: vec![own.clone()],
            })?;
        },
        Workload::Echo { with_fd: false } => loop {
            let Some(bytes) = until_hangup(bytes_in.recv())? else {
                return Ok(());
            };
            bytes_out.send(&bytes)?;
        },
        Workload::Bulk { total, .. } => loop {
            let mut got = 0u64;
            while got < total {
                match until_hangup(bytes_in.recv())? {
                    Some(bytes) => got += bytes.len() as u64,
                    None if got == 0 => return Ok(()),
                    None => return Err("parent hung up mid-transfer".into()),
                }
            }
            bytes_out.send(&[LAST])?;
        },
    }
}

/// `None` when the parent has closed its ends.
fn until_hangup<T>(received: std::result::Result<T, IpcError>) -> Result<Option<T>> {
    match received {
        Ok(value) => Ok(Some(value)),
        Err(IpcError::Disconnected) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
