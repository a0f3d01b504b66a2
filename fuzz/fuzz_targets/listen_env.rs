//! The LISTEN_* convention parser: three arbitrary strings and a pid.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Option<String>, Option<String>, Option<String>, u32)| {
    let (fds, pid, names, me) = input;
    if let Ok(names_out) = handoff::Inherited::parse(fds.as_deref(), pid.as_deref(), names.as_deref(), me) {
        // Accepted input is self-consistent.
        let count: u64 = fds.as_deref().map_or(0, |s| s.parse().unwrap());
        assert_eq!(names_out.len() as u64, count);
        if count > 0 {
            assert_eq!(pid.as_deref().unwrap().parse::<u64>().unwrap(), u64::from(me));
        }
    }
});
