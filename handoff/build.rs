//! Chooses the portable Unix configuration of the backend.
//!
//! `handoff_portable` is set on every Unix without `SOCK_SEQPACKET`
//! Unix-domain sockets worth relying on (everything but Linux and Android:
//! macOS and the BSDs), and on Linux when `--cfg handoff_unix_portable` is
//! given, so that CI runs the portable code paths on the one kernel it has.
//! One private name for that condition keeps the `cfg` attributes short and
//! the condition in one place.

use std::env;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(handoff_portable)");
    println!("cargo:rerun-if-changed=build.rs");
    let unix = env::var_os("CARGO_CFG_UNIX").is_some();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let linux_like = os == "linux" || os == "android";
    // Cargo passes every `--cfg` of RUSTFLAGS to build scripts as
    // CARGO_CFG_<NAME>.
    let forced = env::var_os("CARGO_CFG_HANDOFF_UNIX_PORTABLE").is_some();
    // The stub backend has no transport at all; nothing to choose.
    let stub = env::var_os("CARGO_CFG_HANDOFF_NO_BACKEND").is_some();
    if unix && !stub && (forced || !linux_like) {
        println!("cargo:rustc-cfg=handoff_portable");
    }
}
