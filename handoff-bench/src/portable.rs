//! `--portable`: the benchmarks with handoff built in its portable Unix
//! configuration (channels over `SOCK_STREAM`, as on macOS and the BSDs).
//!
//! That configuration is chosen when handoff is compiled, so a binary
//! built the usual way on Linux builds the portable one
//! (`RUSTFLAGS="--cfg handoff_unix_portable"`, its own target directory
//! `target/portable-release` so the two builds do not evict each other)
//! and runs it in its place with the same arguments. A binary already
//! portable (forced, or on macOS and the BSDs) just runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Whether this binary's handoff is the portable configuration.
pub fn active() -> bool {
    handoff::__private::PORTABLE_UNIX
}

/// Builds the portable binary and replaces this process with it; returns
/// only on failure.
pub fn build_and_run() -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the benchmark crate has no parent directory")?;
    let target_dir = workspace.join("target").join("portable-release");
    let mut rustflags = std::env::var_os("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(" ");
    }
    rustflags.push("--cfg handoff_unix_portable");
    // The cargo that built this binary, so the same toolchain builds the
    // portable one.
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    eprintln!(
        "building the portable configuration into {} ...",
        target_dir.display()
    );
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "handoff-bench"])
        .current_dir(workspace)
        .env("RUSTFLAGS", &rustflags)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()?;
    if !status.success() {
        return Err(format!("building the portable benchmarks failed: {status}").into());
    }
    let binary: PathBuf = target_dir
        .join("release")
        .join(format!("handoff-bench{}", std::env::consts::EXE_SUFFIX));
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    exec(&binary, &args)
}

#[cfg(unix)]
fn exec(binary: &Path, args: &[OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    // exec only returns on failure.
    Err(Command::new(binary).args(args).exec().into())
}

#[cfg(not(unix))]
fn exec(_binary: &Path, _args: &[OsString]) -> Result<()> {
    Err("the portable configuration exists on Unix only".into())
}
