//! The state one generation hands the next (`handoff::restart::state`):
//! the UDP flows' positions and a cache of `RESTART_SERVER_STATE_BYTES`
//! bytes (default 1 MiB) standing for whatever a real service keeps in
//! memory. Generation 1 fills the cache with a pattern; every later one
//! holds its predecessor's mapping (read in place, no copy) and writes it
//! into the state it hands on.
//!
//! Payload: `flows <n>\n`, then `<address> <served>\n` per flow, then the
//! cache. The library checks version, length and CRC before this parses.

use std::collections::HashMap;
use std::net::SocketAddr;

use handoff::restart::state::{self, State};
use handoff::Handle;

/// This program's state format; a version that reads another refuses it.
pub const VERSION: u32 = 1;
/// The most state a generation accepts.
const MAX_STATE: u64 = 4 << 30;
const DEFAULT_CACHE: usize = 1 << 20;

/// Datagrams served per UDP flow (its source address), across generations.
pub type Flows = HashMap<SocketAddr, u64>;

/// The cache: filled here, or the predecessor's mapping.
pub enum Cache {
    Own(Vec<u8>),
    Inherited { state: State, at: usize },
}

impl Cache {
    /// Generation 1's cache, of the configured size.
    pub fn fresh() -> Cache {
        let len = std::env::var("RESTART_SERVER_STATE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_CACHE);
        Cache::Own((0..len).map(|i| (i % 251) as u8).collect())
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Cache::Own(v) => v,
            Cache::Inherited { state, at } => &state.bytes()[*at..],
        }
    }
}

/// Seals the flows and the cache as this program's state.
pub fn create(flows: &Flows, cache: &Cache) -> handoff::Result<Handle> {
    let mut head = format!("flows {}\n", flows.len());
    for (addr, served) in flows {
        head.push_str(&format!("{addr} {served}\n"));
    }
    state::create_parts(VERSION, &[head.as_bytes(), cache.bytes()])
}

/// Validates `handle` as state of `version` (the library checks the
/// seals, the header and the CRC) and reads the flows; the cache stays
/// in the mapping.
pub fn open(handle: Handle, version: u32) -> Result<(Flows, Cache), String> {
    let state = State::open(handle, version, MAX_STATE).map_err(|e| e.to_string())?;
    let (flows, at) = parse(state.bytes())?;
    Ok((flows, Cache::Inherited { state, at }))
}

/// The flows and where the cache starts.
fn parse(bytes: &[u8]) -> Result<(Flows, usize), String> {
    let mut at = 0;
    let mut line = || -> Result<&str, String> {
        let rest = &bytes[at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("state: a line without its end")?;
        at += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "state: not text".to_string())
    };
    let count: usize = line()?
        .strip_prefix("flows ")
        .and_then(|n| n.parse().ok())
        .ok_or("state: no flow count")?;
    let mut flows = Flows::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let l = line()?;
        let (addr, served) = l.split_once(' ').ok_or("state: bad flow line")?;
        let addr = addr
            .parse()
            .map_err(|_| format!("state: bad address {addr:?}"))?;
        let served = served.parse().map_err(|_| "state: bad count".to_string())?;
        flows.insert(addr, served);
    }
    Ok((flows, at))
}

#[cfg(test)]
mod tests {
    #[test]
    fn flows_and_cache_round_trip_and_garbage_is_refused() {
        let mut flows = super::Flows::new();
        flows.insert("127.0.0.2:4000".parse().unwrap(), 7);
        let mut bytes = b"flows 1\n127.0.0.2:4000 7\n".to_vec();
        bytes.extend_from_slice(b"cache");
        let (parsed, at) = super::parse(&bytes).unwrap();
        assert_eq!(parsed, flows);
        assert_eq!(&bytes[at..], b"cache");
        assert!(super::parse(b"flows 2\n127.0.0.2:4000 7\n").is_err());
        assert!(super::parse(b"flows x\n").is_err());
    }
}
