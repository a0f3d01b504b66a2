//! The command line's NAME=PATH[:mode] and NAME=tcp:HOST:PORT parsers.
#![no_main]

#[path = "../../handoff-cli/src/spec.rs"]
#[allow(dead_code)]
mod spec;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(f) = spec::fd_spec(s) {
        assert!(!f.name.is_empty() && !f.name.contains(':'));
        assert!(!f.path.as_os_str().is_empty());
    }
    if let Ok(l) = spec::listen_spec(s) {
        assert!(!l.name.is_empty());
    }
});
