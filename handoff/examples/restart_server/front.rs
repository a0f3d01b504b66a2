//! The sockets every generation shares and the loops that read them. One
//! generation accepts and reads UDP at a time during a handover: the old
//! one halts its loops before it hands over and starts them again if the
//! handover fails; the new one reads UDP only once it holds the flows.
//! Each loop works on a duplicate of the socket, so halting one closes
//! only its duplicate and the socket (one queue) stays.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::server::{Shared, Sockets};
use crate::snapshot::Flows;
use crate::{echo, http};

const UDP_BUFFER: usize = 4 << 20;
const BACKLOG: i32 = 4096;

pub struct Front {
    sockets: Sockets,
    /// The UDP flows, written by the UDP loop while it runs.
    pub flows: Arc<Mutex<Flows>>,
    accepting: Option<Loops>,
    reading: Option<Loops>,
}

struct Loops {
    halt: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Loops {
    fn new() -> (Loops, watch::Receiver<bool>) {
        let (halt, rx) = watch::channel(false);
        (
            Loops {
                halt,
                tasks: JoinSet::new(),
            },
            rx,
        )
    }

    async fn halt(mut self) {
        self.halt.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Puts in `slot` the loops `spawn` starts, unless loops run there
    /// already. If `spawn` fails, the loops it started end with it (a
    /// `JoinSet` aborts its tasks when dropped).
    fn start(
        slot: &mut Option<Loops>,
        spawn: impl FnOnce(&mut JoinSet<()>, watch::Receiver<bool>) -> io::Result<()>,
    ) -> io::Result<()> {
        if slot.is_some() {
            return Ok(());
        }
        let (mut loops, halt) = Loops::new();
        spawn(&mut loops.tasks, halt)?;
        *slot = Some(loops);
        Ok(())
    }
}

impl Front {
    /// Makes the settings every generation makes alike (the sockets are
    /// shared, so they agree): non-blocking, a deeper listen backlog, a
    /// larger UDP receive buffer.
    pub fn new(sockets: Sockets) -> io::Result<Front> {
        if let Some(l) = &sockets.http {
            deepen(l);
            l.set_nonblocking(true)?;
        }
        if let Some(s) = &sockets.udp {
            // Room for a few hundred milliseconds of datagrams: on a busy
            // machine a generation can be off the CPU that long, and the
            // default buffer holds only some tens of milliseconds at
            // thousands of datagrams a second. (The kernel caps it at
            // net.core.rmem_max.)
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(s, UDP_BUFFER);
            s.set_nonblocking(true)?;
        }
        if let Some(l) = &sockets.unix {
            deepen(l);
            l.set_nonblocking(true)?;
        }
        Ok(Front {
            sockets,
            flows: Arc::default(),
            accepting: None,
            reading: None,
        })
    }

    /// Starts the accept loops (HTTP and Unix), unless they run.
    pub fn accept(&mut self, shared: &Shared) -> io::Result<()> {
        let sockets = &self.sockets;
        Loops::start(&mut self.accepting, |tasks, halt| {
            if let Some(l) = &sockets.http {
                let l = tokio::net::TcpListener::from_std(l.try_clone()?)?;
                tasks.spawn(http::accept_loop(l, shared.clone(), halt.clone()));
            }
            if let Some(l) = &sockets.unix {
                let l = tokio::net::UnixListener::from_std(l.try_clone()?)?;
                tasks.spawn(echo::unix_accept_loop(l, shared.clone(), halt));
            }
            Ok(())
        })
    }

    /// Starts reading UDP with the flows as they are, unless it runs.
    pub fn read_udp(&mut self, label: &Arc<str>) -> io::Result<()> {
        let (sockets, flows) = (&self.sockets, &self.flows);
        Loops::start(&mut self.reading, |tasks, halt| {
            if let Some(s) = &sockets.udp {
                let s = tokio::net::UdpSocket::from_std(s.try_clone()?)?;
                tasks.spawn(echo::udp_loop(s, flows.clone(), halt, label.clone()));
            }
            Ok(())
        })
    }

    pub async fn halt_accept(&mut self) {
        if let Some(l) = self.accepting.take() {
            l.halt().await;
        }
    }

    /// Stops reading UDP and returns the flows as the last datagram left
    /// them.
    pub async fn halt_udp(&mut self) -> Flows {
        if let Some(l) = self.reading.take() {
            l.halt().await;
        }
        self.flows.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Everything again, after a handover that did not happen.
    pub fn resume(&mut self, shared: &Shared) -> io::Result<()> {
        self.accept(shared)?;
        self.read_udp(&shared.label)
    }

    pub async fn halt(&mut self) {
        self.halt_accept().await;
        self.halt_udp().await;
    }

    /// Closes this process's copies of the sockets (after `halt`).
    pub fn close(&mut self) {
        self.sockets = Sockets::default();
    }

    /// The sockets by name, for a successor this process starts itself.
    pub fn named(&self) -> Vec<(&'static str, BorrowedFd<'_>)> {
        let mut v = Vec::new();
        if let Some(l) = &self.sockets.http {
            v.push(("http", l.as_fd()));
        }
        if let Some(s) = &self.sockets.udp {
            v.push(("udp", s.as_fd()));
        }
        if let Some(l) = &self.sockets.unix {
            v.push(("unix", l.as_fd()));
        }
        v
    }
}

/// Calls `listen` again with a deeper backlog, as nginx does with the
/// sockets it inherits: std binds with 128, about 60 ms of new connections
/// at 2,000 a second, and a generation briefly off the CPU on a busy
/// machine would see the kernel drop SYNs (`TcpExtListenOverflows`), which
/// clients feel as a one-second retransmission. The kernel caps it at
/// net.core.somaxconn; the socket is shared, so every generation agrees.
fn deepen(listener: &impl AsFd) {
    let _ = rustix::net::listen(listener, BACKLOG);
}
