//! Named pipes for channels: creating a server instance with a DACL for
//! the current user only, opening the client end, waiting for a client.
//! `socket.rs` makes channel ends of them; `listener.rs` listeners.

use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::path::Path;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    LocalFree, ERROR_PIPE_CONNECTED, GENERIC_READ, GENERIC_WRITE, HANDLE,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, SetNamedPipeHandleState, PIPE_READMODE_MESSAGE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_MESSAGE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::cvt;
use super::overlapped::run as overlapped;
use crate::channel::prefix::MAX_WIRE;

/// Creates one server instance of the pipe `name` (NUL-terminated UTF-16):
/// message mode, non-inheritable, overlapped, local clients only, and a
/// DACL for the current user only. `first` insists that no instance of the
/// name exists yet, so nobody can have created it before us.
pub(super) fn server_instance(
    name: &[u16],
    first: bool,
    instances: u32,
) -> io::Result<OwnedHandle> {
    let sd = UserOnly::new()?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    // Advisory sizes: room for a few whole datagrams before a writer waits.
    let buffer = (4 * MAX_WIRE) as u32;
    let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
    if first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    // SAFETY: a NUL-terminated name and valid attributes that outlive the
    // call; the result is checked and owned at once.
    unsafe {
        super::owned(CreateNamedPipeW(
            name.as_ptr(),
            open_mode,
            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            instances,
            buffer,
            buffer,
            0,
            &sa,
        ))
    }
}

/// Opens the client end of pipe `name`, non-inheritable and overlapped, in
/// message read mode. SQOS limits the server to identifying us, never
/// impersonating us.
pub(super) fn client(name: &[u16]) -> io::Result<OwnedHandle> {
    // SAFETY: a NUL-terminated name; null attributes make the handle
    // non-inheritable; the result is checked and owned at once.
    let client = unsafe {
        super::owned(CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            std::ptr::null_mut(),
        ))
    }?;
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: the handle is ours; only the read mode changes.
    cvt(unsafe {
        SetNamedPipeHandleState(
            client.as_raw_handle() as HANDLE,
            &mode,
            std::ptr::null(),
            std::ptr::null(),
        )
    })?;
    Ok(client)
}

/// Waits for a client to connect to a server instance.
pub(super) fn wait_for_client(server: &OwnedHandle) -> io::Result<()> {
    let h = server.as_raw_handle() as HANDLE;
    match overlapped(h, None, |ov| {
        // SAFETY: the instance is ours; `ov` outlives the operation.
        unsafe { ConnectNamedPipe(h, ov) }
    }) {
        Ok(_) => Ok(()),
        // The client was quicker than us.
        Err(e) if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED as i32) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    s.encode_wide().chain(Some(0)).collect()
}

/// A security descriptor granting access to the current user only,
/// freed on drop.
struct UserOnly(PSECURITY_DESCRIPTOR);

impl UserOnly {
    fn new() -> io::Result<UserOnly> {
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
        };
        static SDDL: OnceLock<Vec<u16>> = OnceLock::new();
        let sddl = match SDDL.get() {
            Some(s) => s,
            None => {
                let sid = user_sid()?;
                // Protected DACL, one ACE: generic all for the user.
                let text = format!("D:P(A;;GA;;;{sid})");
                SDDL.get_or_init(|| text.encode_utf16().chain(Some(0)).collect())
            }
        };
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: a NUL-terminated SDDL string; `sd` receives a LocalAlloc'd
        // descriptor we free in Drop.
        cvt(unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(UserOnly(sd))
    }
}

impl Drop for UserOnly {
    fn drop(&mut self) {
        // SAFETY: the descriptor was LocalAlloc'd by the conversion above.
        unsafe { LocalFree(self.0) };
    }
}

/// The current user's SID in string form (`S-1-5-21-…`).
fn user_sid() -> io::Result<String> {
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    use windows_sys::Win32::Security::{GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER};
    use windows_sys::Win32::System::Threading::OpenProcessToken;
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: our own process's token, for querying; `token` is ours.
    cvt(unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) })?;
    // SAFETY: OpenProcessToken succeeded: a new handle we own.
    let token = unsafe { super::handle::own_raw(token as std::os::windows::io::RawHandle) };
    let mut buf = [0u64; 64];
    let mut len = 0u32;
    // SAFETY: the buffer is writable for its size, which is passed.
    cvt(unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenUser,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(&buf) as u32,
            &mut len,
        )
    })?;
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID
    // points into the same buffer.
    let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: a valid SID; `text` receives a LocalAlloc'd string.
    cvt(unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) })?;
    let mut n = 0;
    // SAFETY: the string is NUL-terminated.
    while unsafe { *text.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: `n` UTF-16 units before the NUL.
    let sid = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, n) });
    // SAFETY: allocated by ConvertSidToStringSidW with LocalAlloc.
    unsafe { LocalFree(text.cast()) };
    Ok(sid)
}

/// The pipe name a listener path stands for: `\\.\pipe\…` only, since
/// named pipes live in their own namespace, not in the file system.
pub(super) fn pipe_name(path: &Path) -> io::Result<Vec<u16>> {
    let text = path.to_string_lossy();
    let prefix = r"\\.\pipe\";
    let ok = text.len() > prefix.len()
        && text
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    if !ok {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a listener's path on Windows is a pipe name (\\\\.\\pipe\\NAME), not {}",
                path.display()
            ),
        ));
    }
    Ok(wide(path.as_os_str()))
}
