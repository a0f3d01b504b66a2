//! The campaign runs in a private network namespace with only loopback, so
//! its counters count only its own traffic: the binary re-executes itself
//! under `unshare --net` (util-linux) and brings `lo` up with `ip`
//! (iproute2).

use std::process::{Command, ExitCode};

use crate::Result;

/// Set in the re-executed copy.
const INSIDE: &str = "HANDOFF_RESTART_NETNS";

/// Outside the namespace: runs this same command inside one and returns its
/// exit code. Inside: brings loopback up and returns `None` (go on).
pub fn enter() -> Result<Option<ExitCode>> {
    if std::env::var_os(INSIDE).is_some() {
        let own = std::fs::read_link("/proc/self/ns/net")?;
        let init = std::fs::read_link("/proc/1/ns/net").ok();
        if init.as_ref() == Some(&own) {
            return Err("not in a private network namespace (unshare did not take)".into());
        }
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()?;
        if !status.success() {
            return Err(format!("`ip link set lo up` failed: {status}").into());
        }
        return Ok(None);
    }
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .status()
        .map_err(|e| format!("running `unshare --net` (util-linux): {e}"))?;
    Ok(Some(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }))
}
