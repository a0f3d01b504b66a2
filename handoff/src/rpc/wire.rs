//! RPC frames: a fixed 24-byte header and a body, one channel message each.
//!
//! Specified in `docs/wire-format.md` ("RPC"). Integers are little-endian
//! with fixed widths; handles travel in the channel message and bodies name
//! them by `u32` index; nothing is pointer-sized.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Fault, Identity};
use crate::{Error, Result};

/// The RPC wire format version this crate speaks.
pub const VERSION: u8 = 1;

/// Bytes before a frame's body.
pub const HEADER_LEN: usize = 24;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Client → server, first frame: the client's interface identity.
    Hello = 1,
    /// Server → client, answer to HELLO: accepted or not, the server's
    /// identity and limits.
    Welcome = 2,
    /// Client → server: a method call.
    Call = 3,
    /// Server → client: a call's result (or an acknowledged CLOSE).
    Reply = 4,
    /// Server → client: the runtime refused or failed a call (call id 0:
    /// the whole connection, which is then closed).
    Fault = 5,
    /// Client → server: close a context handle (runs its rundown).
    Close = 6,
}

impl FrameType {
    fn from_u8(v: u8) -> Option<FrameType> {
        Some(match v {
            1 => FrameType::Hello,
            2 => FrameType::Welcome,
            3 => FrameType::Call,
            4 => FrameType::Reply,
            5 => FrameType::Fault,
            6 => FrameType::Close,
            _ => return None,
        })
    }
}

/// A frame's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub ty: FrameType,
    /// CALL: the method's index in the trait (declaration order); else 0.
    pub method: u32,
    /// The caller's id for the call (never 0 in CALL, REPLY, CLOSE); 0 in
    /// HELLO, WELCOME and connection-level FAULT.
    pub call_id: u64,
    /// Handles attached to this message.
    pub handles: u32,
    /// Bytes after the header.
    pub body_len: u32,
}

impl Header {
    /// The header's 24 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1] = self.ty as u8;
        // h[2..4]: flags, none defined in version 1.
        h[4..8].copy_from_slice(&self.method.to_le_bytes());
        h[CALL_ID].copy_from_slice(&self.call_id.to_le_bytes());
        h[16..20].copy_from_slice(&self.handles.to_le_bytes());
        h[20..24].copy_from_slice(&self.body_len.to_le_bytes());
        h
    }

    /// Parses and checks the header of a received message that came with
    /// `handles_arrived` handles.
    pub fn decode(bytes: &[u8], handles_arrived: usize) -> Result<Header> {
        let bad = |m: String| Error::Malformed(format!("rpc frame: {m}"));
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if bytes[0] != VERSION {
            return Err(bad(format!(
                "version {}, this side speaks {VERSION}",
                bytes[0]
            )));
        }
        let ty = FrameType::from_u8(bytes[1])
            .ok_or_else(|| bad(format!("unknown frame type {}", bytes[1])))?;
        let flags = u16::from_le_bytes([bytes[2], bytes[3]]);
        if flags != 0 {
            return Err(bad(format!("flags {flags:#06x}, none are defined")));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let header = Header {
            ty,
            method: u32_at(4),
            call_id: u64::from_le_bytes(bytes[CALL_ID].try_into().expect("8 bytes")),
            handles: u32_at(16),
            body_len: u32_at(20),
        };
        if header.handles as usize != handles_arrived {
            return Err(bad(format!(
                "header announces {} handles, {handles_arrived} arrived",
                header.handles
            )));
        }
        if header.body_len as usize != bytes.len() - HEADER_LEN {
            return Err(bad(format!(
                "header announces {} body bytes, {} arrived",
                header.body_len,
                bytes.len() - HEADER_LEN
            )));
        }
        let needs_id = matches!(ty, FrameType::Call | FrameType::Reply | FrameType::Close);
        if needs_id && header.call_id == 0 {
            return Err(bad("call id 0 is reserved for the connection".into()));
        }
        if ty != FrameType::Call && header.method != 0 {
            return Err(bad(format!(
                "method {} in a frame that is not a call",
                header.method
            )));
        }
        Ok(header)
    }
}

/// Writes `call_id` into an encoded frame's header: the client numbers a
/// call only when it sends it. `frame` must start with a header.
pub(crate) fn set_call_id(frame: &mut [u8], call_id: u64) {
    frame[CALL_ID].copy_from_slice(&call_id.to_le_bytes());
}

/// Where the call id sits in the header.
const CALL_ID: std::ops::Range<usize> = 8..16;

/// Builds a frame: the header, then `body` encoded as a typed payload.
///
/// A value with a [`Handle`](crate::Handle) inside does not encode: handles
/// travel only as declared handle parameters and results, by index.
pub fn frame<T: Serialize + ?Sized>(
    ty: FrameType,
    method: u32,
    call_id: u64,
    handles: usize,
    body: &T,
) -> Result<Vec<u8>> {
    let mut bytes = super::spare::bytes();
    bytes.resize(HEADER_LEN, 0);
    bincode::serde::encode_into_std_write(body, &mut bytes, crate::channel::typed::config())
        .map_err(|e| Error::Encode(e.to_string()))?;
    let body_len = u32::try_from(bytes.len() - HEADER_LEN).map_err(|_| Error::TooLarge {
        what: "rpc frame body bytes",
        got: (bytes.len() - HEADER_LEN) as u64,
        limit: u64::from(u32::MAX),
    })?;
    let handles = u32::try_from(handles).map_err(|_| Error::TooLarge {
        what: "rpc frame handles",
        got: handles as u64,
        limit: u64::from(u32::MAX),
    })?;
    let header = Header {
        ty,
        method,
        call_id,
        handles,
        body_len,
    };
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    Ok(bytes)
}

/// An empty message to receive a frame into, with room for a small one,
/// so that it lands in place instead of being copied into a new buffer.
pub(crate) fn buffer() -> crate::Message {
    crate::Message {
        bytes: super::spare::bytes(),
        handles: super::spare::handles(),
    }
}

/// Decodes a frame's body (the bytes after the header) as a `T`; the body
/// must end exactly where the value does.
pub fn body<T: DeserializeOwned>(frame: &[u8]) -> Result<T> {
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    // Bounded like typed messages: a lying length prefix must not make the
    // server allocate it.
    let (value, used) = crate::channel::typed::decode_bounded::<T>(body)
        .map_err(|e| Error::Malformed(format!("rpc frame body: {e}")))?;
    if used != body.len() {
        return Err(Error::Malformed(format!(
            "rpc frame body: {} trailing bytes after the value",
            body.len() - used
        )));
    }
    Ok(value)
}

/// The body of HELLO.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub name: String,
    pub version: u32,
    pub hash: u64,
}

/// The body of WELCOME.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Welcome {
    pub accepted: bool,
    pub name: String,
    pub version: u32,
    pub hash: u64,
    pub max_bytes: u64,
    pub max_handles: u32,
    pub max_in_flight: u32,
}

impl Hello {
    pub(crate) fn of(identity: &Identity) -> Hello {
        Hello {
            name: identity.name.clone().into_owned(),
            version: identity.version,
            hash: identity.hash,
        }
    }

    pub(crate) fn identity(self) -> Identity {
        Identity {
            name: self.name.into(),
            version: self.version,
            hash: self.hash,
        }
    }
}

/// A connection-level FAULT frame (call id 0).
pub(crate) fn connection_fault(fault: &Fault) -> Option<Vec<u8>> {
    frame(FrameType::Fault, 0, 0, 0, fault).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_hello() {
        let identity = Identity::new("Demo", 1, 0x0102_0304_0506_0708);
        let bytes = frame(FrameType::Hello, 0, 0, 0, &Hello::of(&identity)).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // version 1, HELLO, flags 0, method 0
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // call id 0
            0x00, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, // 0 handles, 24 body bytes
            0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'D', b'e', b'm', b'o', // name
            0x01, 0x00, 0x00, 0x00, // version
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // hash
        ];
        assert_eq!(bytes, expected);
        let header = Header::decode(&bytes, 0).unwrap();
        assert_eq!(header.ty, FrameType::Hello);
        let hello: Hello = body(&bytes).unwrap();
        assert_eq!(hello.identity(), identity);
    }

    #[test]
    fn golden_call_with_one_handle() {
        // Method 2, call id 7, arguments (handle index 0, "hi").
        let bytes = frame(FrameType::Call, 2, 7, 1, &(0u32, "hi")).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x01, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,                                 // handle index 0
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, b'h', b'i', // "hi"
        ];
        assert_eq!(bytes, expected);
        assert_eq!(
            Header::decode(&bytes, 1).unwrap(),
            Header {
                ty: FrameType::Call,
                method: 2,
                call_id: 7,
                handles: 1,
                body_len: 14
            }
        );
    }

    #[test]
    fn golden_reply_and_fault() {
        let ok: std::result::Result<u64, String> = Ok(5);
        let bytes = frame(FrameType::Reply, 0, 7, 0, &ok).unwrap();
        assert_eq!(&bytes[..2], &[0x01, 0x04]);
        assert_eq!(&bytes[HEADER_LEN..], &[0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        let fault = Fault::UnknownMethod { method: 9 };
        let bytes = frame(FrameType::Fault, 0, 7, 0, &fault).unwrap();
        assert_eq!(&bytes[HEADER_LEN..], &[1, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(body::<Fault>(&bytes).unwrap(), fault);
    }

    #[test]
    fn bad_headers_are_malformed_never_panics() {
        let good = frame(FrameType::Call, 1, 3, 0, &()).unwrap();
        // `bytes` with byte `at` set to `value`.
        let set = |bytes: &[u8], at: usize, value: u8| {
            let mut b = bytes.to_vec();
            b[at] = value;
            b
        };
        let cases: Vec<(Vec<u8>, usize)> = vec![
            (vec![], 0),
            (good[..23].to_vec(), 0),
            (set(&good, 0, 2), 0),
            (set(&good, 1, 0), 0),
            (set(&good, 1, 99), 0),
            (set(&good, 2, 1), 0),
            (set(&good, 8, 0), 0),
            (good.clone(), 1),
            ([&good[..], &[0]].concat(), 0),
            (
                set(&frame(FrameType::Reply, 0, 3, 0, &()).unwrap(), 4, 1),
                0,
            ),
        ];
        for (bytes, handles) in cases {
            assert!(
                matches!(Header::decode(&bytes, handles), Err(Error::Malformed(_))),
                "{bytes:?}"
            );
        }
        assert!(Header::decode(&good, 0).is_ok());
    }

    #[test]
    fn handles_inside_plain_values_do_not_encode() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let h = crate::Handle::from(file);
        assert!(matches!(
            frame(FrameType::Call, 1, 1, 0, &h),
            Err(Error::Encode(_))
        ));
    }
}
