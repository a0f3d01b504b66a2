//! `spawn::unix::CommandExt` on `Command`: each setting goes to the std
//! command the Unix spawn falls back to. Here rather than in `spawn.rs`
//! because `pre_exec` forwards to std's `unsafe` method; shared by every
//! backend on Unix (the stub too), since it only records settings.

use std::io;
use std::os::unix::process::CommandExt as _;

use crate::spawn::unix::CommandExt;
use crate::Command;

impl CommandExt for Command {
    fn uid(&mut self, id: u32) -> &mut Command {
        self.std_settings().uid(id);
        self
    }

    fn gid(&mut self, id: u32) -> &mut Command {
        self.std_settings().gid(id);
        self
    }

    fn process_group(&mut self, pgroup: i32) -> &mut Command {
        self.std_settings().process_group(pgroup);
        self
    }

    unsafe fn pre_exec<F>(&mut self, f: F) -> &mut Command
    where
        F: FnMut() -> io::Result<()> + Send + Sync + 'static,
    {
        // SAFETY: the caller of this unsafe method takes on std's contract
        // for `f`, which is the same.
        unsafe { self.std_settings().pre_exec(f) };
        self
    }
}
