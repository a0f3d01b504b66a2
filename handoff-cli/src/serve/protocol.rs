//! The control socket's messages: one JSON request per connection, one
//! JSON reply. Pure (serde only), so the fuzz target includes this file.

use serde::{Deserialize, Serialize};

/// Largest request accepted, in bytes.
pub(crate) const MAX_REQUEST: usize = 4096;

/// A request on the wire: `{"op":"restart"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestMessage {
    pub op: Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// Start the next generation and stop the current one.
    Restart,
    /// Re-execute the supervisor keeping everything.
    RestartSupervisor,
    /// Report the state.
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub ok: bool,
    /// One line for the user.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusReport {
    pub supervisor_pid: u32,
    pub restarts: u64,
    pub restarting: bool,
    pub generations: Vec<GenerationReport>,
    pub listeners: Vec<ListenerReport>,
    pub stored: Vec<StoredReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GenerationReport {
    pub number: u64,
    pub pid: u32,
    pub main_pid: u32,
    pub state: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListenerReport {
    pub name: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredReport {
    pub name: String,
    pub count: usize,
}

/// Decodes a request; every failure is a sentence.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Request, String> {
    if bytes.len() > MAX_REQUEST {
        return Err(format!(
            "request of {} bytes is over {MAX_REQUEST}",
            bytes.len()
        ));
    }
    serde_json::from_slice::<RequestMessage>(bytes)
        .map(|m| m.op)
        .map_err(|e| format!("bad request: {e}"))
}

/// Encodes a request.
pub(crate) fn encode_request(op: Request) -> Vec<u8> {
    serde_json::to_vec(&RequestMessage { op }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(decode_request(br#"{"op":"restart"}"#), Ok(Request::Restart));
        assert_eq!(
            decode_request(br#"{"op":"restart_supervisor"}"#),
            Ok(Request::RestartSupervisor)
        );
        for op in [
            Request::Restart,
            Request::RestartSupervisor,
            Request::Status,
        ] {
            assert_eq!(decode_request(&encode_request(op)), Ok(op));
        }
        for bad in [
            &b""[..],
            b"{}",
            b"{\"op\":\"reboot\"}",
            b"\xff",
            b"{\"op\":\"status\",\"x\":1}",
        ] {
            assert!(decode_request(bad).is_err(), "{bad:?}");
        }
        assert!(decode_request(&vec![b' '; MAX_REQUEST + 1]).is_err());
    }
}
