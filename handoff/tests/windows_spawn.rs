//! Spawning, the Windows-only part: hand-written `HANDOFF_HANDLES` and
//! `HANDOFF_PARENT_PID` values are refused with an error naming the
//! problem, and nothing this process owns is taken. The portable part is in
//! `spawn.rs`.
#![cfg(windows)]

mod common;

use common::*;
use handoff::{AsHandle, Error, Inherited, Kind};

fn refused(contains: &str) {
    let e = Inherited::from_env().unwrap_err();
    assert!(
        matches!(&e, Error::BadInheritance { problem, .. } if problem.contains(contains)),
        "{e}"
    );
}

#[test]
fn bogus_inherited_handles_are_named() {
    // The parent sets HANDOFF_PARENT_PID to its pid; each role writes the
    // rest itself, as a confused or hostile parent could.
    match role().as_deref() {
        Some("not-open") => {
            std::env::set_var("HANDOFF_HANDLES", "4000000");
            refused("not open");
        }
        Some("opened-here") => {
            // A value that names a handle this process opened: claiming it
            // would close it under its owner.
            let mine = null_file();
            let value = mine.as_handle().raw() as usize;
            std::env::set_var("HANDOFF_HANDLES", value.to_string());
            refused("not inheritable");
            assert_eq!(mine.as_handle().kind().unwrap(), Kind::Other, "still ours");
        }
        Some("misaligned") => {
            std::env::set_var("HANDOFF_HANDLES", "6");
            refused("not a handle value");
        }
        Some("pid-mismatch") => {
            std::env::set_var("HANDOFF_HANDLES", "4");
            std::env::set_var("HANDOFF_PARENT_PID", "1");
            refused("not this process's parent");
            assert!(
                std::env::var("HANDOFF_HANDLES").is_ok(),
                "nothing claimed, nothing unset"
            );
        }
        Some("names") => {
            std::env::set_var("HANDOFF_HANDLES", "4:8");
            std::env::set_var("LISTEN_FDNAMES", "only-one");
            refused("LISTEN_FDNAMES");
        }
        Some(other) => panic!("unknown role {other}"),
        None => {
            let _serial = serial();
            let me = std::process::id().to_string();
            for role in [
                "not-open",
                "opened-here",
                "misaligned",
                "pid-mismatch",
                "names",
            ] {
                let child = spawn_plain_with(this_test!(), role, &[("HANDOFF_PARENT_PID", &me)]);
                assert_success(child);
            }
        }
    }
}
