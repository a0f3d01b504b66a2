//! Backends: the only place with `unsafe` code and system calls.
//!
//! The portable modules above (`handle`, `channel`, …) call into exactly one
//! backend, chosen here by `cfg`. Every backend provides the same items, and
//! this list is the contract a new backend must meet:
//!
//! | item | meaning |
//! |---|---|
//! | `OwnedRaw`, `BorrowedRaw<'a>`, `RawHandle` | the platform's owned and borrowed handle types and the number that names a handle in one process |
//! | `handle::try_clone(b) -> io::Result<OwnedRaw>` | a new handle to the same object, created non-inheritable in one step |
//! | `handle::kind(b) -> io::Result<Kind>` | what the object is, read from the kernel |
//! | `handle::access(b) -> io::Result<Access>` | the rights the handle grants, read from the kernel |
//! | `handle::is_inheritable(b)`, `handle::set_inheritable(b, on)` | close-on-exec / `HANDLE_FLAG_INHERIT` |
//! | `handle::restrict(b, access) -> Result<OwnedRaw>` | a new handle with fewer rights enforced by the kernel, `Error::Unsupported` where the kind cannot be narrowed, `Error::WrongAccess` when asking for rights the handle lacks |
//! | `handle::borrow_raw`, `handle::own_raw` (`unsafe`) | the one place raw numbers become handles |
//! | `handle::count_open() -> io::Result<usize>` | how many handles the process holds (leak checks) |
//! | `socket::pair()`, `socket::bind(path)`, `socket::connect(path)`, `socket::accept(l, nb)` | message sockets that keep datagram boundaries |
//! | `socket::configure(s, want) -> io::Result<usize>` | prepare a socket, return the largest datagram it can send |
//! | `socket::send(s, header, payload, handles, nb)` | send one datagram atomically with its handles |
//! | `socket::recv(s, header, first, second, handles, nb) -> io::Result<Received>` | receive one datagram, owning every handle it carried before returning, and report truncation of bytes or handles |
//! | `socket::MAX_HANDLES_PER_DATAGRAM` | how many handles one datagram carries |
//! | `socket::peer_credentials(s)` | pid, uid, gid and a race-free process handle where the OS has one |
//!
//! Rules every backend keeps: every handle it creates is non-inheritable;
//! a received handle is owned before any check can return early; `Drop`
//! never panics; errors are `io::Error` from the call that failed, mapped to
//! `crate::Error` by the portable layer.
#![allow(unsafe_code)]

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
