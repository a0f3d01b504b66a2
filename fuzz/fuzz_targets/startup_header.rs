//! Startup-data validation: arbitrary bytes in a memfd, sealed or not,
//! opened as startup data. Never a panic, never a mapping of an object that
//! failed a check, never a leaked handle.
#![no_main]

use handoff::startup::Populate;
use handoff::{Handle, StartupData};
use libfuzzer_sys::fuzz_target;
use rustix::fs::{MemfdFlags, SealFlags};

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    common::without_leaks(|| {
        let fd = rustix::fs::memfd_create("fuzz", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        let mut written = 0;
        while written < bytes.len() {
            written += rustix::io::write(&fd, &bytes[written..]).unwrap();
        }
        if mode & 1 == 1 {
            let _ = rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK);
        }
        if let Ok(data) = StartupData::open_with(
            Handle::from(fd),
            if mode & 2 == 2 {
                Populate::Now
            } else {
                Populate::OnRead
            },
        ) {
            let sum: u64 = data.bytes().iter().map(|&b| u64::from(b)).sum();
            std::hint::black_box(sum);
            let _ = data.value::<(u32, String, Vec<u64>)>();
        }
    });
});
