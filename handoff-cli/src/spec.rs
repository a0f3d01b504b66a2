//! The command line's handle specifications: `NAME=PATH[:r|:w|:rw]` for
//! files and `NAME=tcp:HOST:PORT` / `NAME=udp:HOST:PORT` / `NAME=unix:PATH`
//! for sockets.
//! Pure parsing with std only, so the fuzz targets can include this file.

use std::path::PathBuf;

/// How a file is opened for the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read-only.
    Read,
    /// Write-only, created if missing, not truncated.
    Write,
    /// Read-write, created if missing, not truncated.
    ReadWrite,
}

/// `--fd NAME=PATH[:mode]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdSpec {
    pub name: String,
    pub path: PathBuf,
    pub mode: Mode,
}

/// Where `--listen` binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// `tcp:HOST:PORT`; an IPv6 host may be bracketed.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`, a stream socket.
    Unix(PathBuf),
    /// `udp:HOST:PORT`, a bound datagram socket.
    Udp { host: String, port: u16 },
}

/// `--listen NAME=ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenSpec {
    pub name: String,
    pub address: Address,
}

fn split_name(s: &str) -> Result<(&str, &str), String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} has no NAME= in front"))?;
    if name.is_empty() || name.contains([':', '\0']) {
        return Err(format!(
            "{name:?} is not a handle name (non-empty, without ':' or NUL)"
        ));
    }
    Ok((name, rest))
}

/// Parses `NAME=PATH[:r|:w|:rw]`; the mode defaults to read-only. A path
/// that itself ends in `:r` needs an explicit mode after it.
pub(crate) fn fd_spec(s: &str) -> Result<FdSpec, String> {
    let (name, rest) = split_name(s)?;
    let (path, mode) = match rest.rsplit_once(':') {
        Some((p, "r")) => (p, Mode::Read),
        Some((p, "w")) => (p, Mode::Write),
        Some((p, "rw")) => (p, Mode::ReadWrite),
        _ => (rest, Mode::Read),
    };
    if path.is_empty() || path.contains('\0') {
        return Err(format!("{s:?} names no path"));
    }
    Ok(FdSpec {
        name: name.to_owned(),
        path: PathBuf::from(path),
        mode,
    })
}

/// Parses `NAME=tcp:HOST:PORT`, `NAME=udp:HOST:PORT` or `NAME=unix:PATH`.
pub(crate) fn listen_spec(s: &str) -> Result<ListenSpec, String> {
    let (name, rest) = split_name(s)?;
    let (scheme, hp) = match (rest.strip_prefix("tcp:"), rest.strip_prefix("udp:")) {
        (Some(hp), _) => ("tcp", Some(hp)),
        (_, Some(hp)) => ("udp", Some(hp)),
        _ => ("", None),
    };
    let address = if let Some(hp) = hp {
        let (host, port) = hp
            .rsplit_once(':')
            .ok_or_else(|| format!("{rest:?} needs {scheme}:HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port (0 to 65535)"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(['\0', '[', ']']) {
            return Err(format!("{rest:?} names no host"));
        }
        let host = host.to_owned();
        if scheme == "udp" {
            Address::Udp { host, port }
        } else {
            Address::Tcp { host, port }
        }
    } else if let Some(path) = rest.strip_prefix("unix:") {
        if path.is_empty() || path.contains('\0') {
            return Err(format!("{rest:?} names no path"));
        }
        Address::Unix(PathBuf::from(path))
    } else {
        return Err(format!(
            "{rest:?} is not tcp:HOST:PORT, udp:HOST:PORT or unix:PATH"
        ));
    };
    Ok(ListenSpec {
        name: name.to_owned(),
        address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files() {
        let f = fd_spec("cfg=/etc/app.conf").unwrap();
        assert_eq!((f.name.as_str(), f.mode), ("cfg", Mode::Read));
        assert_eq!(f.path, PathBuf::from("/etc/app.conf"));
        assert_eq!(fd_spec("log=/var/log/x:w").unwrap().mode, Mode::Write);
        assert_eq!(fd_spec("db=a:b:rw").unwrap().path, PathBuf::from("a:b"));
        assert_eq!(fd_spec("t=odd:r:r").unwrap().path, PathBuf::from("odd:r"));
        for bad in ["noequals", "=x", "a:b=x", "n=", "n=:rw"] {
            assert!(fd_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sockets() {
        let tcp = |host: &str, port| Address::Tcp {
            host: host.into(),
            port,
        };
        for (spec, address) in [
            ("web=tcp:127.0.0.1:8080", tcp("127.0.0.1", 8080)),
            ("v6=tcp:[::1]:0", tcp("::1", 0)),
            (
                "u=udp:127.0.0.1:53",
                Address::Udp {
                    host: "127.0.0.1".into(),
                    port: 53,
                },
            ),
            ("s=unix:/run/x.sock", Address::Unix("/run/x.sock".into())),
        ] {
            assert_eq!(listen_spec(spec).unwrap().address, address, "{spec}");
        }
        for bad in [
            "web=tcp:host",
            "web=tcp:host:99999",
            "web=tcp::80",
            "web=udp:h",
            "web=sctp:h:1",
            "web=unix:",
            "tcp:h:1",
            "web=tcp:h:-1",
        ] {
            assert!(listen_spec(bad).is_err(), "{bad}");
        }
    }
}
