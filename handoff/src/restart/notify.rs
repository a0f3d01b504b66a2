//! The systemd notify protocol as a pure codec: one datagram's bytes (and
//! how many handles came with it) in, a typed [`Notification`] out, and
//! back. No system calls here, so the fuzz target runs it as is.
//!
//! A datagram is lines of `KEY=VALUE` separated by `\n`. This codec is
//! stricter than systemd's own reader in one way: a line without `=` is an
//! error rather than silently ignored, so a sender's mistake is seen.
//! Unknown keys are kept (systemd ignores them; a supervisor may log them).

use std::fmt;

/// The largest datagram accepted, in bytes. systemd reads notifications
/// into a buffer of `PIPE_BUF` (4096) bytes and refuses longer ones.
pub const MAX_DATAGRAM: usize = 4096;

/// The longest `FDNAME=` systemd accepts (`FDNAME_MAX`).
pub const MAX_FDNAME: usize = 255;

/// The name systemd gives a stored handle sent without `FDNAME=`.
pub const DEFAULT_FDNAME: &str = "stored";

/// One notify datagram, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    /// `READY=1`: startup finished, the service serves.
    pub ready: bool,
    /// `RELOADING=1`: reloading its configuration.
    pub reloading: bool,
    /// `STOPPING=1`: shutting down.
    pub stopping: bool,
    /// `STATUS=`: free text for humans.
    pub status: Option<String>,
    /// `MAINPID=`: the process to watch from now on.
    pub main_pid: Option<u32>,
    /// `EXTEND_TIMEOUT_USEC=`: more time for the current phase.
    pub extend_timeout_usec: Option<u64>,
    /// `FDSTORE=1`: the attached handles are to be stored.
    pub fd_store: bool,
    /// `FDNAME=`: the name of the stored (or removed) handles.
    pub fd_name: Option<String>,
    /// `FDSTOREREMOVE=1`: close the stored handles named `fd_name`.
    pub fd_store_remove: bool,
    /// `FDPOLL=0`: do not drop stored handles when they hang up.
    pub fd_poll: Option<bool>,
    /// `BARRIER=1`: the sender waits until the attached pipe end is closed.
    pub barrier: bool,
    /// Keys this codec does not know, in order, with their values.
    pub unknown: Vec<(String, String)>,
}

/// Why a notify datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// No bytes at all.
    #[error("empty notification")]
    Empty,
    /// Longer than [`MAX_DATAGRAM`].
    #[error("notification of {len} bytes is longer than {MAX_DATAGRAM}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not UTF-8, or holding NUL or other control bytes (tab aside).
    #[error("notification is not text (byte {byte:#04x} at offset {offset})")]
    Binary {
        /// The first offending byte.
        byte: u8,
        /// Where it is.
        offset: usize,
    },
    /// A line without `=`.
    #[error("line {line:?} has no '='")]
    NoEquals {
        /// The line (shortened to 64 characters).
        line: String,
    },
    /// A known key with a value it cannot take.
    #[error("{key}={value:?}: {why}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value (shortened to 64 characters).
        value: String,
        /// What it should be.
        why: &'static str,
    },
    /// `FDNAME=` that systemd refuses.
    #[error("FDNAME={name:?}: {why}")]
    BadFdName {
        /// The name (shortened to 64 characters).
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `FDSTORE=1` with no handle attached.
    #[error("FDSTORE=1 came without any handle")]
    FdStoreWithoutHandles,
    /// The kernel could not deliver every handle (`MSG_CTRUNC`: the
    /// receiver's descriptor table is full, or more than 253 were sent).
    #[error("handles were lost in delivery ({received} arrived; descriptor table full?)")]
    HandlesTruncated {
        /// How many arrived (all closed).
        received: usize,
    },
    /// Handles attached to a datagram without `FDSTORE=1` (nor `BARRIER=1`).
    #[error("{count} handle(s) came without FDSTORE=1")]
    HandlesWithoutFdStore {
        /// How many.
        count: usize,
    },
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Checks a name the way systemd's `fdname_is_valid` does: printable ASCII
/// (space to `~`), no `:` (it separates names in `LISTEN_FDNAMES`), at most
/// [`MAX_FDNAME`] bytes. The empty name is valid.
pub fn check_fdname(name: &str) -> Result<(), NotifyError> {
    let bad = |why| NotifyError::BadFdName {
        name: short(name),
        why,
    };
    if name.len() > MAX_FDNAME {
        return Err(bad("longer than 255 characters"));
    }
    if name.bytes().any(|b| !(b' '..0x7f).contains(&b)) {
        return Err(bad("only printable ASCII is allowed"));
    }
    if name.contains(':') {
        return Err(bad("':' separates names in LISTEN_FDNAMES"));
    }
    Ok(())
}

fn flag(key: &'static str, value: &str) -> Result<bool, NotifyError> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(NotifyError::BadValue {
            key,
            value: short(value),
            why: "expected 0 or 1",
        }),
    }
}

fn number(key: &'static str, value: &str) -> Result<u64, NotifyError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotifyError::BadValue {
            key,
            value: short(value),
            why: "expected a decimal number",
        });
    }
    value.parse().map_err(|_| NotifyError::BadValue {
        key,
        value: short(value),
        why: "out of range",
    })
}

impl Notification {
    /// Decodes one datagram that came with `handles` handles attached.
    pub fn parse(bytes: &[u8], handles: usize) -> Result<Notification, NotifyError> {
        if bytes.is_empty() {
            return Err(NotifyError::Empty);
        }
        if bytes.len() > MAX_DATAGRAM {
            return Err(NotifyError::TooLong { len: bytes.len() });
        }
        if let Some(offset) = bytes
            .iter()
            .position(|&b| (b < b' ' && b != b'\n' && b != b'\t') || b == 0x7f)
        {
            return Err(NotifyError::Binary {
                byte: bytes[offset],
                offset,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| NotifyError::Binary {
            byte: bytes[e.valid_up_to()],
            offset: e.valid_up_to(),
        })?;
        let mut n = Notification::default();
        if text.split('\n').all(str::is_empty) {
            return Err(NotifyError::Empty);
        }
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| NotifyError::NoEquals { line: short(line) })?;
            match key {
                "READY" => n.ready = flag("READY", value)?,
                "RELOADING" => n.reloading = flag("RELOADING", value)?,
                "STOPPING" => n.stopping = flag("STOPPING", value)?,
                "STATUS" => n.status = Some(value.to_owned()),
                "MAINPID" => {
                    let pid = number("MAINPID", value)?;
                    n.main_pid = Some(
                        u32::try_from(pid)
                            .ok()
                            .filter(|p| *p >= 1 && *p <= i32::MAX as u32)
                            .ok_or(NotifyError::BadValue {
                                key: "MAINPID",
                                value: short(value),
                                why: "not a process id",
                            })?,
                    );
                }
                "EXTEND_TIMEOUT_USEC" => {
                    n.extend_timeout_usec = Some(number("EXTEND_TIMEOUT_USEC", value)?)
                }
                "FDSTORE" => n.fd_store = flag("FDSTORE", value)?,
                "FDSTOREREMOVE" => n.fd_store_remove = flag("FDSTOREREMOVE", value)?,
                "FDPOLL" => n.fd_poll = Some(flag("FDPOLL", value)?),
                "BARRIER" => n.barrier = flag("BARRIER", value)?,
                "FDNAME" => {
                    check_fdname(value)?;
                    n.fd_name = Some(value.to_owned());
                }
                _ => n.unknown.push((key.to_owned(), value.to_owned())),
            }
        }
        if n.fd_store && handles == 0 {
            return Err(NotifyError::FdStoreWithoutHandles);
        }
        if !n.fd_store && !n.barrier && handles > 0 {
            return Err(NotifyError::HandlesWithoutFdStore { count: handles });
        }
        Ok(n)
    }

    /// The name stored handles get: `FDNAME=`, or systemd's default.
    pub fn store_name(&self) -> &str {
        match self.fd_name.as_deref() {
            Some(name) if !name.is_empty() => name,
            _ => DEFAULT_FDNAME,
        }
    }

    /// Encodes for sending; the inverse of [`parse`](Self::parse) for every
    /// value `parse` accepts. Values holding a newline cannot be encoded
    /// (they would become two lines): they are cut at the newline.
    pub fn encode(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |v: &str| v.split('\n').next().unwrap_or("").to_owned();
        let flag = |on: bool, text: &str| on.then(|| text.to_owned());
        // In this order, so that the text is the same for the same value.
        let known = [
            flag(self.ready, "READY=1"),
            flag(self.reloading, "RELOADING=1"),
            flag(self.stopping, "STOPPING=1"),
            self.status.as_ref().map(|s| format!("STATUS={}", line(s))),
            self.main_pid.map(|p| format!("MAINPID={p}")),
            self.extend_timeout_usec
                .map(|t| format!("EXTEND_TIMEOUT_USEC={t}")),
            flag(self.fd_store, "FDSTORE=1"),
            flag(self.fd_store_remove, "FDSTOREREMOVE=1"),
            self.fd_name.as_ref().map(|n| format!("FDNAME={}", line(n))),
            self.fd_poll.map(|p| format!("FDPOLL={}", u8::from(p))),
            flag(self.barrier, "BARRIER=1"),
        ];
        let unknown = self
            .unknown
            .iter()
            .map(|(k, v)| format!("{}={}", line(k), line(v)));
        let mut lines: Vec<String> = known.into_iter().flatten().chain(unknown).collect();
        if lines.is_empty() {
            // A message of only cleared flags ("READY=0") says nothing, but an
            // empty datagram is not a message: encode it as one cleared flag
            // so that what `parse` accepted parses again.
            lines.push("READY=0".into());
        }
        f.write_str(&lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key() {
        let n = Notification::parse(
            b"READY=1\nRELOADING=1\nSTOPPING=1\nSTATUS=serving 3 = ok\nMAINPID=42\n\
EXTEND_TIMEOUT_USEC=5000000\nFDSTORE=1\nFDNAME=db conn\nFDPOLL=0\nBARRIER=1\nX_CUSTOM=7\n",
            2,
        )
        .unwrap();
        assert!(n.ready && n.reloading && n.stopping && n.fd_store && n.barrier);
        assert_eq!(n.status.as_deref(), Some("serving 3 = ok"));
        assert_eq!(n.main_pid, Some(42));
        assert_eq!(n.extend_timeout_usec, Some(5_000_000));
        assert_eq!(n.store_name(), "db conn");
        assert_eq!(n.fd_poll, Some(false));
        assert_eq!(n.unknown, vec![("X_CUSTOM".into(), "7".into())]);
        assert_eq!(Notification::parse(n.encode().as_bytes(), 2).unwrap(), n);
    }

    #[test]
    fn defaults() {
        let n = Notification::parse(b"FDSTORE=1", 1).unwrap();
        assert_eq!(n.store_name(), DEFAULT_FDNAME);
        let r = Notification::parse(b"FDSTOREREMOVE=1\nFDNAME=x", 0).unwrap();
        assert!(r.fd_store_remove && !r.fd_store);
        // Only cleared flags: nothing to say, yet it must encode to a message.
        let cleared = Notification::parse(b"READY=0\nBARRIER=0", 0).unwrap();
        assert_eq!(cleared, Notification::default());
        assert_eq!(
            Notification::parse(cleared.encode().as_bytes(), 0).unwrap(),
            cleared
        );
    }

    #[test]
    fn malformed() {
        use NotifyError::*;
        let e = |b: &[u8], h| Notification::parse(b, h).unwrap_err();
        assert_eq!(e(b"", 0), Empty);
        assert_eq!(e(b"\n\n", 0), Empty);
        assert_eq!(e(&[b'A'; MAX_DATAGRAM + 1], 0), TooLong { len: 4097 });
        assert!(matches!(e(b"READY", 0), NoEquals { .. }));
        assert!(matches!(e(b"READY=1\nbogus", 0), NoEquals { .. }));
        assert!(matches!(e(b"READY=1\0", 0), Binary { offset: 7, .. }));
        assert!(matches!(e(b"STATUS=\xff\xfe", 0), Binary { offset: 7, .. }));
        assert!(matches!(e(b"READY=yes", 0), BadValue { key: "READY", .. }));
        assert!(matches!(e(b"MAINPID=0", 0), BadValue { .. }));
        assert!(matches!(e(b"MAINPID=-5", 0), BadValue { .. }));
        assert!(matches!(
            e(b"MAINPID=99999999999999999999999", 0),
            BadValue { .. }
        ));
        assert_eq!(e(b"FDSTORE=1\nFDNAME=x", 0), FdStoreWithoutHandles);
        assert_eq!(e(b"READY=1", 3), HandlesWithoutFdStore { count: 3 });
        assert!(matches!(e(b"FDSTORE=1\nFDNAME=a:b", 1), BadFdName { .. }));
        assert!(matches!(
            e("FDSTORE=1\nFDNAME=é".as_bytes(), 1),
            BadFdName { .. }
        ));
        assert!(matches!(e(b"FDSTORE=1\nFDNAME=a\tb", 1), BadFdName { .. }));
        let long = format!("FDSTORE=1\nFDNAME={}", "n".repeat(256));
        assert!(matches!(e(long.as_bytes(), 1), BadFdName { .. }));
        let ok = format!("FDSTORE=1\nFDNAME={}", "n".repeat(255));
        assert!(Notification::parse(ok.as_bytes(), 1).is_ok());
    }

    proptest::proptest! {
        /// What the fuzz target checks, on every test run: no panic, and
        /// whatever is accepted encodes to a message that decodes the same.
        #[test]
        fn accepted_messages_survive_a_round_trip(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            lines in proptest::collection::vec("[A-Z_]{0,12}=[ -~]{0,20}", 0..6),
            handles in 0usize..3,
        ) {
            for input in [bytes, lines.join("\n").into_bytes()] {
                if let Ok(n) = Notification::parse(&input, handles) {
                    let again = Notification::parse(n.encode().as_bytes(), handles).unwrap();
                    proptest::prop_assert_eq!(again.encode(), n.encode());
                }
            }
        }
    }

    #[test]
    fn fdnames_as_systemd() {
        assert!(check_fdname("").is_ok());
        assert!(check_fdname("web sock~!").is_ok());
        for bad in ["a:b", "tab\t", "\u{7f}", "ü"] {
            assert!(check_fdname(bad).is_err(), "{bad:?}");
        }
    }
}
