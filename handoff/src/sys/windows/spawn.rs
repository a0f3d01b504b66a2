//! Spawning a child that inherits exactly the chosen handles.
//!
//! `CreateProcessW` with `bInheritHandles` would hand the child every
//! inheritable handle of this process; a `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`
//! in a `STARTUPINFOEXW` narrows that to the list. The list holds
//! inheritable duplicates made for this one call (the child's standard
//! handles and each named handle), closed in the parent right after; the
//! values reach the child in `HANDOFF_HANDLES` (inheritance keeps values),
//! the names in `LISTEN_FDNAMES`, and this process's pid in
//! `HANDOFF_PARENT_PID` so that a grandchild that inherits the variables
//! but not the handles refuses them.
//!
//! While the duplicates exist another thread's `CreateProcess` without a
//! handle list (std's, for one) could inherit them too; std's own pipes
//! have the same window, and no lock outside std can close it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::io::{AsRawHandle, BorrowedHandle, OwnedHandle};
use std::os::windows::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Foundation::{GENERIC_READ, GENERIC_WRITE};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::Threading::{
    CreateProcessW, DeleteProcThreadAttributeList, GetCurrentProcess, GetExitCodeProcess,
    InitializeProcThreadAttributeList, TerminateProcess, UpdateProcThreadAttribute,
    WaitForSingleObject, CREATE_UNICODE_ENVIRONMENT, EXTENDED_STARTUPINFO_PRESENT, INFINITE,
    LPPROC_THREAD_ATTRIBUTE_LIST, PROCESS_INFORMATION, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    STARTF_USESTDHANDLES, STARTUPINFOEXW, STARTUPINFOW,
};

use super::cvt;
use crate::spawn::{ProgramSearch, Spec};
use crate::stdio::{Stdio, StdioKind};

/// The convention's variables; a child never inherits the parent's own.
pub(crate) const CONVENTION_VARS: &[&str] =
    &["HANDOFF_HANDLES", "HANDOFF_PARENT_PID", "LISTEN_FDNAMES"];

/// The variable that announces the handles (named in errors).
pub(crate) const HANDLES_VAR: &str = "HANDOFF_HANDLES";

/// Removes the convention's variables from this process's environment once
/// the handles are claimed, so children spawned by other means do not see
/// them. Changing the environment is not thread-safe on Unix (and `unsafe`
/// from edition 2024), so it happens here, in the backend.
pub(crate) fn forget_convention_vars() {
    for var in CONVENTION_VARS {
        std::env::remove_var(var);
    }
}

/// True when two environment variable names are the same variable:
/// Windows compares them without regard to case.
pub(crate) fn same_var(a: &OsStr, b: &OsStr) -> bool {
    var_key(a) == var_key(b)
}

/// A variable name as Windows compares and sorts it: UTF-16 with ASCII
/// letters upper-cased.
fn var_key(name: &OsStr) -> Vec<u16> {
    name.encode_wide()
        .map(|c| {
            if (b'a' as u16..=b'z' as u16).contains(&c) {
                c - 32
            } else {
                c
            }
        })
        .collect()
}

/// What the caller hands to [`spawn`] besides the command.
pub(crate) struct SpawnRequest<'a> {
    /// The child's full environment, without the convention's variables.
    pub env: Vec<(OsString, OsString)>,
    /// The named handles, in order.
    pub handles: Vec<(BorrowedHandle<'a>, &'a str)>,
}

/// A spawned child, held by its process handle.
#[derive(Debug)]
pub(crate) struct Child {
    process: OwnedHandle,
    pid: u32,
    stdio: [Option<OwnedHandle>; 3],
    status: Option<ExitStatus>,
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    pub(crate) fn exit_handle(&self) -> Option<BorrowedHandle<'_>> {
        Some(std::os::windows::io::AsHandle::as_handle(&self.process))
    }

    fn wait_for(&mut self, ms: u32) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let h = self.process.as_raw_handle() as HANDLE;
        // SAFETY: waiting on our own process handle.
        match unsafe { WaitForSingleObject(h, ms) } {
            WAIT_OBJECT_0 => {}
            WAIT_TIMEOUT => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
        let mut code = 0u32;
        // SAFETY: our own process handle; `code` is ours to write.
        cvt(unsafe { GetExitCodeProcess(h, &mut code) })?;
        let status = ExitStatus::from_raw(code);
        self.status = Some(status);
        Ok(Some(status))
    }

    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        self.wait_for(INFINITE)?
            .ok_or_else(|| io::Error::other("the child did not exit"))
    }

    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_for(0)
    }

    pub(crate) fn kill(&mut self) -> io::Result<()> {
        // SAFETY: our own process handle, with PROCESS_TERMINATE.
        let ok = unsafe { TerminateProcess(self.process.as_raw_handle() as HANDLE, 1) };
        if ok == 0 {
            // A child that already exited cannot be terminated; that is
            // not an error for the caller.
            let e = io::Error::last_os_error();
            if self.try_wait()?.is_none() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Takes the parent's end of a piped standard stream (0, 1 or 2).
    pub(crate) fn take_stdio(&mut self, which: u8) -> Option<OwnedHandle> {
        self.stdio[usize::from(which.min(2))].take()
    }
}

/// The pid of the process that created this one
/// (`NtQueryInformationProcess`, `InheritedFromUniqueProcessId`).
pub(crate) fn parent_pid() -> io::Result<u32> {
    use windows_sys::Wdk::System::Threading::{NtQueryInformationProcess, ProcessBasicInformation};
    // PROCESS_BASIC_INFORMATION's layout; windows-sys gates its own behind
    // the PEB's feature, which nothing else here needs.
    #[repr(C)]
    #[allow(non_camel_case_types)]
    struct PROCESS_BASIC_INFORMATION {
        exit_status: i32,
        peb: *mut std::ffi::c_void,
        affinity: usize,
        priority: i32,
        pid: usize,
        parent: usize,
    }
    // SAFETY: zeroed plain data is a valid value to be filled in.
    let mut info: PROCESS_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    let mut len = 0u32;
    // SAFETY: our own pseudo handle; `info` is writable for its size.
    let status = unsafe {
        NtQueryInformationProcess(
            GetCurrentProcess(),
            ProcessBasicInformation,
            (&mut info as *mut PROCESS_BASIC_INFORMATION).cast(),
            std::mem::size_of::<PROCESS_BASIC_INFORMATION>() as u32,
            &mut len,
        )
    };
    if status != 0 {
        return Err(super::nt::ntstatus(status));
    }
    Ok(info.parent as u32)
}

/// An inheritable duplicate, for one `CreateProcessW`.
fn inheritable(h: HANDLE) -> io::Result<OwnedHandle> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicating within this process a handle the caller borrows;
    // `out` is ours to write.
    cvt(unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut out,
            0,
            1,
            DUPLICATE_SAME_ACCESS,
        )
    })?;
    // SAFETY: a new handle nobody else owns.
    Ok(unsafe { super::handle::own_raw(out as std::os::windows::io::RawHandle) })
}

/// The child's end of one standard stream (inheritable) and, for a pipe,
/// the parent's end (not).
fn std_stream(
    which: usize,
    cfg: Option<&Stdio>,
) -> io::Result<(Option<OwnedHandle>, Option<OwnedHandle>)> {
    let inherit = || -> io::Result<Option<OwnedHandle>> {
        let id = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE][which];
        // SAFETY: reads this process's standard handle; it is not ours to
        // close, so only a duplicate is kept.
        let h = unsafe { GetStdHandle(id) };
        if h.is_null() || h as isize == -1 {
            return Ok(None);
        }
        // A detached or odd standard handle is left out, not fatal.
        Ok(inheritable(h).ok())
    };
    match cfg.map(|s| &s.0) {
        None | Some(StdioKind::Inherit) => Ok((inherit()?, None)),
        Some(StdioKind::Handle(h)) => Ok((Some(inheritable(h.as_raw_handle() as HANDLE)?), None)),
        Some(StdioKind::Null) => {
            let sa = SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: std::ptr::null_mut(),
                bInheritHandle: 1,
            };
            let nul: Vec<u16> = "NUL".encode_utf16().chain(Some(0)).collect();
            // SAFETY: opens the NUL device, inheritable, for the child only;
            // the result is checked and owned at once.
            let h = unsafe {
                super::owned(CreateFileW(
                    nul.as_ptr(),
                    GENERIC_READ | GENERIC_WRITE,
                    FILE_SHARE_READ | FILE_SHARE_WRITE,
                    &sa,
                    OPEN_EXISTING,
                    0,
                    std::ptr::null_mut(),
                ))
            }?;
            Ok((Some(h), None))
        }
        Some(StdioKind::Piped) => {
            let (mut r, mut w): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
            // SAFETY: both ends are created non-inheritable (null
            // attributes) and owned at once below.
            cvt(unsafe { CreatePipe(&mut r, &mut w, std::ptr::null(), 0) })?;
            // SAFETY: CreatePipe succeeded: two new handles nobody owns.
            let (r, w) = unsafe {
                (
                    super::handle::own_raw(r as std::os::windows::io::RawHandle),
                    super::handle::own_raw(w as std::os::windows::io::RawHandle),
                )
            };
            let (child, parent) = if which == 0 { (r, w) } else { (w, r) };
            Ok((
                Some(inheritable(child.as_raw_handle() as HANDLE)?),
                Some(parent),
            ))
        }
    }
}

/// Appends `arg` to a command line, quoted so that `CommandLineToArgvW` and
/// the C runtime read it back unchanged.
fn push_quoted(out: &mut Vec<u16>, arg: &OsStr) {
    const BACKSLASH: u16 = b'\\' as u16;
    const QUOTE: u16 = b'"' as u16;
    let wide: Vec<u16> = arg.encode_wide().collect();
    let plain = !wide.is_empty()
        && !wide.iter().any(|&c| {
            c == b' ' as u16 || c == b'\t' as u16 || c == b'\n' as u16 || c == 0x0b || c == QUOTE
        });
    if plain {
        out.extend_from_slice(&wide);
        return;
    }
    out.push(QUOTE);
    let mut backslashes = 0usize;
    for &c in &wide {
        if c == BACKSLASH {
            backslashes += 1;
        } else {
            if c == QUOTE {
                // Backslashes before a quote are doubled, plus one to escape
                // the quote itself.
                out.extend(std::iter::repeat_n(BACKSLASH, backslashes + 1));
            }
            backslashes = 0;
        }
        out.push(c);
    }
    // Backslashes before the closing quote are doubled.
    out.extend(std::iter::repeat_n(BACKSLASH, backslashes));
    out.push(QUOTE);
}

/// Finds the program: a path is taken as given (relative to the child's
/// directory); a bare name is searched in the child's `PATH`, as is, then
/// with `.exe`. The current directory is never searched.
fn resolve(search: &ProgramSearch<'_>) -> io::Result<PathBuf> {
    let has_dir = search
        .program
        .as_os_str()
        .encode_wide()
        .any(|c| c == b'\\' as u16 || c == b'/' as u16 || c == b':' as u16);
    let runnable = |base: PathBuf| -> Option<PathBuf> {
        let with_exe = base
            .extension()
            .is_none()
            .then(|| base.with_extension("exe"));
        std::iter::once(base)
            .chain(with_exe)
            .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file()))
    };
    if has_dir {
        return runnable(search.seen_by_child(search.program))
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such program"));
    }
    search.search_path(|k| same_var(k, OsStr::new("PATH")), "", runnable)
}

/// The attribute list, freed on drop.
struct Attributes {
    buf: Vec<u64>,
}

impl Attributes {
    /// A list with one attribute: `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` over
    /// `handles`, which must outlive the list.
    fn handle_list(handles: &[HANDLE]) -> io::Result<Attributes> {
        let mut size = 0usize;
        // SAFETY: the documented size query (null list); it fails with
        // ERROR_INSUFFICIENT_BUFFER and sets `size`.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        let mut a = Attributes {
            buf: vec![0u64; size.div_ceil(8)],
        };
        // SAFETY: the buffer is at least `size` bytes and 8-aligned.
        cvt(unsafe { InitializeProcThreadAttributeList(a.list(), 1, 0, &mut size) })?;
        // SAFETY: `handles` lives until after CreateProcessW (the caller's
        // promise); the size is the array's in bytes.
        let ok = unsafe {
            UpdateProcThreadAttribute(
                a.list(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                handles.as_ptr().cast(),
                std::mem::size_of_val(handles),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            drop(a);
            return Err(e);
        }
        Ok(a)
    }

    fn list(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buf.as_mut_ptr().cast()
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: the list was initialised in handle_list.
        unsafe { DeleteProcThreadAttributeList(self.list()) };
    }
}

/// Spawns `b` with exactly the standard handles and the named handles, and
/// returns the child.
pub(crate) fn spawn(b: &mut Spec, req: SpawnRequest<'_>) -> io::Result<Child> {
    let app = resolve(&ProgramSearch::new(b, &req.env))?;
    if let Some(ext) = app.extension().and_then(|e| e.to_str()) {
        if ext.eq_ignore_ascii_case("bat") || ext.eq_ignore_ascii_case("cmd") {
            // cmd.exe parses its command line by other rules than the C
            // runtime; quoting for one is injection for the other.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "batch files are not run directly; spawn cmd.exe with explicit arguments",
            ));
        }
    }

    // The child's standard handles and the named handles, as inheritable
    // duplicates that live until CreateProcessW returns.
    let mut parent_ends: [Option<OwnedHandle>; 3] = [None, None, None];
    let mut std_child: [Option<OwnedHandle>; 3] = [None, None, None];
    for which in 0..3 {
        let (child, parent) = std_stream(which, b.stdio[which].as_ref())?;
        std_child[which] = child;
        parent_ends[which] = parent;
    }
    let named = req
        .handles
        .iter()
        .map(|(h, _)| inheritable(h.as_raw_handle() as HANDLE))
        .collect::<io::Result<Vec<_>>>()?;

    let mut env = req.env;
    if !named.is_empty() {
        let values: Vec<String> = named
            .iter()
            .map(|h| match super::handle::to_wire(h.as_raw_handle()) {
                Some(v) => Ok(v.to_string()),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a handle value does not fit in 32 bits",
                )),
            })
            .collect::<io::Result<_>>()?;
        let names: Vec<&str> = req.handles.iter().map(|(_, n)| *n).collect();
        env.push(("HANDOFF_HANDLES".into(), values.join(":").into()));
        env.push((
            "HANDOFF_PARENT_PID".into(),
            std::process::id().to_string().into(),
        ));
        env.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    }
    let block = environment_block(env)?;

    let mut cmdline = Vec::new();
    push_quoted(&mut cmdline, &b.program);
    for a in &b.args {
        cmdline.push(b' ' as u16);
        push_quoted(&mut cmdline, a);
    }
    if cmdline.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an argument contains a NUL character",
        ));
    }
    cmdline.push(0);
    let app_w: Vec<u16> = app.as_os_str().encode_wide().chain(Some(0)).collect();
    let cwd_w: Option<Vec<u16>> = b
        .cwd
        .as_ref()
        .map(|d| d.as_os_str().encode_wide().chain(Some(0)).collect());

    // A handle may appear in the list once; the standard handles are
    // duplicates of their own, so no two entries are the same handle.
    let list: Vec<HANDLE> = std_child
        .iter()
        .flatten()
        .chain(named.iter())
        .map(|h| h.as_raw_handle() as HANDLE)
        .collect();
    let mut attrs = if list.is_empty() {
        None
    } else {
        Some(Attributes::handle_list(&list)?)
    };

    // SAFETY: zeroed plain data is a valid STARTUPINFOEXW to fill in.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    let raw_or_null = |h: &Option<OwnedHandle>| match h {
        Some(h) => h.as_raw_handle() as HANDLE,
        None => std::ptr::null_mut(),
    };
    si.StartupInfo.hStdInput = raw_or_null(&std_child[0]);
    si.StartupInfo.hStdOutput = raw_or_null(&std_child[1]);
    si.StartupInfo.hStdError = raw_or_null(&std_child[2]);
    si.lpAttributeList = match attrs.as_mut() {
        Some(a) => a.list(),
        None => std::ptr::null_mut(),
    };
    // SAFETY: zeroed plain data is a valid out structure.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: every string is NUL-terminated and alive for the call; the
    // command line is a mutable buffer as CreateProcessW requires; the
    // attribute list and the handles it names outlive the call; with a
    // handle list, only the listed handles are inherited.
    cvt(unsafe {
        CreateProcessW(
            app_w.as_ptr(),
            cmdline.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            i32::from(!list.is_empty()),
            EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT,
            block.as_ptr().cast(),
            cwd_w.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            (&si as *const STARTUPINFOEXW).cast::<STARTUPINFOW>(),
            &mut pi,
        )
    })?;
    // SAFETY: CreateProcessW succeeded: two new handles we own.
    let (process, thread) = unsafe {
        (
            super::handle::own_raw(pi.hProcess as std::os::windows::io::RawHandle),
            super::handle::own_raw(pi.hThread as std::os::windows::io::RawHandle),
        )
    };
    drop(thread);
    drop(attrs);
    // The inheritable duplicates (std_child, named) close here.
    Ok(Child {
        process,
        pid: pi.dwProcessId,
        stdio: parent_ends,
        status: None,
    })
}

/// A Unicode environment block, sorted by name as Windows expects.
fn environment_block(mut env: Vec<(OsString, OsString)>) -> io::Result<Vec<u16>> {
    env.sort_by_key(|(k, _)| var_key(k));
    let mut block = Vec::new();
    for (k, v) in env {
        let k: Vec<u16> = k.encode_wide().collect();
        let v: Vec<u16> = v.encode_wide().collect();
        if k.is_empty() || k[1..].contains(&(b'=' as u16)) || k.contains(&0) || v.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "environment variable {:?} is not valid",
                    OsString::from_wide(&k)
                ),
            ));
        }
        block.extend_from_slice(&k);
        block.push(b'=' as u16);
        block.extend_from_slice(&v);
        block.push(0);
    }
    if block.is_empty() {
        block.push(0);
    }
    block.push(0);
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(args: &[&str]) -> String {
        let mut out = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                out.push(b' ' as u16);
            }
            push_quoted(&mut out, OsStr::new(a));
        }
        String::from_utf16(&out).unwrap()
    }

    #[test]
    fn quoting_follows_the_c_runtime_rules() {
        assert_eq!(quoted(&["a", "b c", ""]), r#"a "b c" """#);
        assert_eq!(quoted(&[r#"say "hi""#]), r#""say \"hi\"""#);
        assert_eq!(quoted(&[r"dir\ x\"]), r#""dir\ x\\""#);
        assert_eq!(quoted(&[r"C:\plain\path"]), r"C:\plain\path");
    }

    /// An inheritable handle this process holds but does not name stays
    /// here: the child, given its value, finds no event there.
    #[test]
    fn only_listed_handles_are_inherited() {
        const ME: &str = "sys::windows::spawn::tests::only_listed_handles_are_inherited";
        use windows_sys::Win32::Foundation::GetHandleInformation;
        use windows_sys::Win32::System::Threading::CreateEventW;
        if let Ok(v) = std::env::var("HANDOFF_UNIT_CLUTTER") {
            let value: usize = v.parse().unwrap();
            let mut flags = 0u32;
            // SAFETY: only asks whether the value names an open handle.
            let open = unsafe { GetHandleInformation(value as HANDLE, &mut flags) } != 0;
            if open {
                // SAFETY: open, as just checked, and not closed while borrowed.
                let b =
                    unsafe { BorrowedHandle::borrow_raw(value as std::os::windows::io::RawHandle) };
                assert_ne!(
                    super::super::handle::kind(b).unwrap(),
                    crate::Kind::Event,
                    "an unnamed inheritable handle reached the child"
                );
            }
            return;
        }
        // SAFETY: an unnamed event; the result is checked and owned.
        let event =
            unsafe { super::super::owned(CreateEventW(std::ptr::null(), 1, 0, std::ptr::null())) }
                .unwrap();
        let eb = std::os::windows::io::AsHandle::as_handle(&event);
        super::super::handle::set_inheritable(eb, true).unwrap();
        let value = event.as_raw_handle() as usize;
        let mut b = Spec {
            program: std::env::current_exe().unwrap().into_os_string(),
            args: ["--exact", ME, "--nocapture"].map(OsString::from).into(),
            env: Vec::new(),
            env_clear: false,
            cwd: None,
            stdio: [None, Some(Stdio::null()), None],
        };
        let null = std::fs::File::open("NUL").unwrap();
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.push(("HANDOFF_UNIT_CLUTTER".into(), value.to_string().into()));
        let req = SpawnRequest {
            env,
            handles: vec![(std::os::windows::io::AsHandle::as_handle(&null), "null")],
        };
        let mut child = spawn(&mut b, req).unwrap();
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn variable_names_ignore_case() {
        assert!(same_var(OsStr::new("Path"), OsStr::new("PATH")));
        assert!(!same_var(OsStr::new("PATH"), OsStr::new("PATHS")));
    }
}
