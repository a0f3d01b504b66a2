//! Listeners: a pipe name with one server instance always waiting for the
//! next client, handed out as a channel end when one comes.

use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::path::Path;
use std::sync::Mutex;
use std::task::{Context, Poll};

use windows_sys::Win32::Foundation::{ERROR_NO_DATA, ERROR_PIPE_CONNECTED, HANDLE};
use windows_sys::Win32::System::Pipes::PIPE_UNLIMITED_INSTANCES;

use super::overlapped::Op;
use super::pipe::{pipe_name, server_instance, wait_for_client};
use super::socket::Socket;

/// A listener: a pipe name with one server instance waiting for the next
/// client.
#[derive(Debug)]
pub(crate) struct Listening {
    name: Vec<u16>,
    next: Mutex<Option<Waiting>>,
}

/// The server instance waiting for the next client.
#[derive(Debug)]
struct Waiting {
    /// Declared first: an operation is dropped (cancelled and waited for)
    /// before its instance closes.
    connect: Connect,
    instance: OwnedHandle,
}

/// How far waiting for a client on an instance has come.
#[derive(Debug)]
enum Connect {
    /// Nothing started.
    Idle,
    /// An async accept started `ConnectNamedPipe`; it stays with the
    /// listener when the future is dropped.
    Pending(Op),
    /// A client came (or the attempt failed) when it was started.
    Done(io::Result<()>),
}

impl Waiting {
    fn new(instance: OwnedHandle) -> Waiting {
        Waiting {
            connect: Connect::Idle,
            instance,
        }
    }

    /// Starts waiting for a client without blocking, if not started yet.
    fn start(&mut self) {
        if let Connect::Idle = self.connect {
            let h = self.instance.as_raw_handle() as HANDLE;
            self.connect = match Op::connect(h) {
                Ok(op) => Connect::Pending(op),
                Err(e) if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED as i32) => {
                    Connect::Done(Ok(()))
                }
                Err(e) => Connect::Done(Err(e)),
            };
        }
    }

    /// The outcome if a client came (or the wait failed), without blocking.
    fn outcome(&mut self) -> Option<io::Result<()>> {
        match &mut self.connect {
            Connect::Idle => None,
            Connect::Pending(op) => op.result().map(|r| r.map(|_| ())),
            Connect::Done(r) => Some(std::mem::replace(r, Ok(()))),
        }
    }

    /// Blocks until a client comes.
    fn wait(mut self) -> (io::Result<()>, OwnedHandle) {
        let r = match &mut self.connect {
            Connect::Idle => wait_for_client(&self.instance),
            Connect::Pending(op) => op.wait(None).unwrap_or(Ok((0, false))).map(|_| ()),
            Connect::Done(r) => std::mem::replace(r, Ok(())),
        };
        let Waiting { connect, instance } = self;
        drop(connect);
        (r, instance)
    }
}

/// Creates the first instance of the pipe `path`; fails if the name exists.
pub(crate) fn bind(path: &Path, _backlog: i32) -> io::Result<Listening> {
    let name = pipe_name(path)?;
    let first = server_instance(&name, true, PIPE_UNLIMITED_INSTANCES)?;
    Ok(Listening {
        name,
        next: Mutex::new(Some(Waiting::new(first))),
    })
}

/// Waits for a client on the waiting instance, hands that instance out as
/// the new channel end, and puts a fresh one in its place. Non-blocking,
/// it is `WouldBlock` until a client has come (`poll_accept` waits).
pub(crate) fn accept(l: &Listening, nonblocking: bool) -> io::Result<Socket> {
    let (connected, instance) = if nonblocking {
        let mut next = l.next.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = match next.as_mut() {
            Some(w) => w,
            None => next.insert(Waiting::new(server_instance(
                &l.name,
                false,
                PIPE_UNLIMITED_INSTANCES,
            )?)),
        };
        waiting.start();
        let Some(r) = waiting.outcome() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let Some(Waiting { connect, instance }) = next.take() else {
            unreachable!("the waiting instance was just looked at");
        };
        drop(connect);
        (r, instance)
    } else {
        let waiting = l.next.lock().unwrap_or_else(|p| p.into_inner()).take();
        match waiting {
            Some(w) => w.wait(),
            // Another thread's accept holds the waiting instance: wait on one
            // of our own.
            None => {
                let i = server_instance(&l.name, false, PIPE_UNLIMITED_INSTANCES)?;
                (wait_for_client(&i), i)
            }
        }
    };
    // Keep an instance open, so the name does not vanish and the next
    // client finds it.
    {
        let mut next = l.next.lock().unwrap_or_else(|p| p.into_inner());
        if next.is_none() {
            *next = server_instance(&l.name, false, PIPE_UNLIMITED_INSTANCES)
                .ok()
                .map(Waiting::new);
        }
    }
    match connected {
        Ok(()) => Ok(Socket::from(instance)),
        // A client that connected and left at once.
        Err(e) if e.raw_os_error() == Some(ERROR_NO_DATA as i32) => {
            Err(io::ErrorKind::ConnectionAborted.into())
        }
        Err(e) => Err(e),
    }
}

/// Accepts block until a client comes, so there is never anything to wait
/// for after one.
pub(crate) fn wait_accept(_l: &Listening) -> io::Result<()> {
    Ok(())
}

/// Ready when a client has come to the waiting instance (or waiting for one
/// failed): the `ConnectNamedPipe` is started if it is not, and stays with
/// the listener if the future is dropped.
pub(crate) fn poll_accept(l: &Listening, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut next = l.next.lock().unwrap_or_else(|p| p.into_inner());
    let waiting = match next.as_mut() {
        Some(w) => w,
        None => match server_instance(&l.name, false, PIPE_UNLIMITED_INSTANCES) {
            Ok(i) => next.insert(Waiting::new(i)),
            Err(e) => return Poll::Ready(Err(e)),
        },
    };
    waiting.start();
    match &mut waiting.connect {
        Connect::Pending(op) => op.poll(cx).map(|_| Ok(())),
        _ => Poll::Ready(Ok(())),
    }
}

/// Pipe names leave no file behind.
pub(crate) fn file_identity(_path: &Path) -> Option<(u64, u64)> {
    None
}

pub(crate) fn remove_if_same(_path: &Path, _identity: Option<(u64, u64)>) {}
