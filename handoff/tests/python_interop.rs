//! The wire format against a second implementation: the pure-Python peer
//! in `python/`, spawned as real processes (`python/tests/peer.py`), over
//! channels with fragments, typed values, startup data, inherited
//! descriptors and RPC both ways; and the golden vectors of
//! `docs/wire-vectors.json`, which the Python tests check too.
//!
//! Tests that need Python print a line and pass when `python3` is not on
//! PATH; CI installs it.
//!
//! Not built in the portable configuration (`--cfg handoff_unix_portable`):
//! the Python peer speaks the seqpacket transport only, and the golden
//! vectors capture seqpacket datagrams; the stream framing has its own
//! golden prefix in `handoff/src/sys/unix/stream.rs`.
#![cfg(all(target_os = "linux", not(handoff_portable)))]

mod common;
#[path = "../examples/interop_peer/service.rs"]
mod service;
#[path = "../examples/interop_peer/shared.rs"]
mod shared;

use handoff::spawn::Stdio;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use common::*;
use handoff::rpc::Server;
use handoff::typed::{Receiver, Sender};
use handoff::{AsHandle, AsyncListener, Channel, Handle, Kind};
use serde_json::Value as Json;
use shared::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vectors() -> Json {
    let text = std::fs::read_to_string(repo().join("docs/wire-vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `python3`, or None after saying why the test does nothing.
fn python() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("python3"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        println!("skipping: python3 is not on PATH, so the Python peer cannot run");
    }
    found
}

/// Runs `test` with the path of python3, counting handles (see
/// [`without_leaks`]); passes without running it where there is none.
fn with_python(test: impl FnOnce(&PathBuf)) {
    if let Some(py) = python() {
        without_leaks(|| test(&py));
    }
}

/// `python3 python/tests/peer.py ROLE ARGS...` as a handoff command.
fn peer(py: &PathBuf, args: &[&str]) -> handoff::Command {
    let mut cmd = handoff::Command::new(py);
    cmd.arg(repo().join("python/tests/peer.py")).args(args);
    cmd
}

/// Starts peer.py `role` with a channel; returns our end and the child.
fn peer_on_channel(py: &PathBuf, role: &str) -> (Channel, handoff::Child) {
    let mut cmd = peer(py, &[role]);
    let ch = cmd.channel().unwrap();
    (ch, cmd.spawn().unwrap())
}

fn wait_ok(mut child: handoff::Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "the Python {what} peer failed: {status}");
}

pub fn sample_vector() -> Sample {
    Sample {
        a: 1,
        b: -2,
        c: 3,
        d: -4,
        e: 5,
        f: true,
        g: 'é',
        h: "hi".into(),
        i: vec![0xff, 0],
        j: Some(7),
        k: [1, 2, 3],
        l: (-1, "x".into()),
        m: vec![Shape::Empty, Shape::Circle(9), Shape::Rect { w: 1, h: 2 }],
        n: [("k".to_owned(), 1u64)].into_iter().collect(),
        o: 1.5,
        p: (),
    }
}

fn typed_vector(v: &Json, name: &str) -> (Vec<u8>, u64) {
    let entry = named(&v["typed"], "typed vector", name);
    (
        unhex(entry["hex"].as_str().unwrap()),
        entry["handles"].as_u64().unwrap(),
    )
}

fn file_handle() -> Handle {
    Handle::from(OwnedFd::from(null_file()))
}

fn inode(h: impl AsFd) -> (u64, u64) {
    let st = rustix::fs::fstat(h).unwrap();
    (st.st_dev, st.st_ino)
}

#[test]
fn golden_vectors_of_the_shared_file() {
    without_leaks(|| {
        let v = vectors();

        // A real one-fragment message, read raw off the socket.
        let (a, b) = Channel::pair().unwrap();
        let raw = OwnedFd::from(b.into_handle());
        let m = &v["one_fragment_message"];
        let file = null_file();
        a.send(&unhex(m["payload"].as_str().unwrap()), &[file.as_handle()])
            .unwrap();
        let mut buf = [0u8; 64];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &raw,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fds = Vec::new();
        for msg in control.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(r) = msg {
                fds.extend(r);
            }
        }
        assert_eq!(fds.len() as u64, m["handles"].as_u64().unwrap());
        assert_eq!(hex(&buf[..got.bytes]), m["datagram"].as_str().unwrap());
        drop((fds, raw, a));

        // Startup data's header.
        let s = &v["startup_header"];
        let region = handoff::startup::create(&unhex(s["payload"].as_str().unwrap())).unwrap();
        let mut header = [0u8; 64];
        std::fs::File::from(OwnedFd::from(region))
            .read_exact_at(&mut header, 0)
            .unwrap();
        assert_eq!(hex(&header), s["hex"].as_str().unwrap());

        // Typed values, both ways.
        let (bytes, n) = typed_vector(&v, "sample");
        let (enc, hs) = handoff::typed::encode(&Envelope::Sample(sample_vector())).unwrap();
        assert_eq!((hex(&enc), hs.len() as u64), (hex(&bytes), n));
        let back: Envelope = handoff::typed::decode(handoff::Message {
            bytes,
            handles: Vec::new(),
        })
        .unwrap();
        assert!(matches!(back, Envelope::Sample(s) if s == sample_vector()));
        let (bytes, n) = typed_vector(&v, "with_handles");
        let value = Envelope::Handles(WithHandles {
            label: "h".into(),
            file: file_handle(),
            maybe: Some(file_handle()),
            many: vec![file_handle(), file_handle()],
        });
        let (enc, hs) = handoff::typed::encode(&value).unwrap();
        assert_eq!((hex(&enc), hs.len() as u64), (hex(&bytes), n));
        let back: Envelope =
            handoff::typed::decode(handoff::Message { bytes, handles: hs }).unwrap();
        assert!(matches!(back, Envelope::Handles(w) if w.many.len() == 2 && w.maybe.is_some()));
        drop(value);
        let (bytes, _) = typed_vector(&v, "with_handles_none");
        let value = Envelope::Handles(WithHandles {
            label: String::new(),
            file: file_handle(),
            maybe: None,
            many: vec![],
        });
        assert_eq!(handoff::typed::encode(&value).unwrap().0, bytes);
        for (name, c) in [
            ("char_7f", '\u{7f}'),
            ("char_80", '\u{80}'),
            ("char_20ac", '€'),
            ("char_10ffff", '\u{10ffff}'),
        ] {
            assert_eq!(
                handoff::typed::encode(&c).unwrap().0,
                typed_vector(&v, name).0,
                "{name}"
            );
        }
        assert_eq!(
            handoff::typed::encode(&[1u16, 2, 3]).unwrap().0,
            typed_vector(&v, "array_u16_3").0
        );

        // The interface hash: the macro's number is FNV-1a of the text.
        let files = &v["interface_hash"][0];
        assert_eq!(files["canonical"].as_str().unwrap(), FILES_CANONICAL);
        let hash = u64::from_str_radix(files["hash"].as_str().unwrap(), 16).unwrap();
        assert_eq!(FilesClient::IDENTITY.hash, hash);
        assert_eq!(fnv1a(FILES_CANONICAL.as_bytes()), hash);
        // README.md's example interface, declared in Rust as its comment says.
        mod logs {
            use handoff::BorrowedHandle;
            #[handoff::interface(name = "app.Logs", version = 1)]
            pub trait Logs {
                async fn append_to(
                    &self,
                    #[handle(file, write)] log: BorrowedHandle<'_>,
                    line: String,
                ) -> Result<u64, String>;
            }
        }
        let readme = &v["interface_hash"][2];
        assert_eq!(readme["name"], "app.Logs");
        assert_eq!(
            logs::LogsClient::IDENTITY.hash,
            u64::from_str_radix(readme["hash"].as_str().unwrap(), 16).unwrap()
        );
        let empty = &v["interface_hash"][1];
        assert_eq!(
            fnv1a(empty["canonical"].as_str().unwrap().as_bytes()),
            u64::from_str_radix(empty["hash"].as_str().unwrap(), 16).unwrap()
        );
    });
}

/// A Rust `interop.Files` server on its own runtime, at a fresh path.
struct RustServer {
    rt: tokio::runtime::Runtime,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn rust_server() -> RustServer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("files.sock");
    let listener = {
        let _enter = rt.enter();
        AsyncListener::bind(&path).unwrap()
    };
    rt.spawn(Server::new(FilesServer::new(service::Service::default())).serve(listener));
    RustServer {
        rt,
        path,
        _dir: dir,
    }
}

#[test]
fn golden_rpc_frames_on_a_real_server() {
    without_leaks(|| {
        let server = rust_server();
        let v = &vectors()["rpc"];
        let ch = Channel::connect(&server.path).unwrap();
        for (send, expect) in [
            ("hello", "welcome"),
            ("call_refuse_no", "reply_err_no"),
            ("close_unknown_5", "fault_unknown_context"),
        ] {
            ch.send(&unhex(v[send].as_str().unwrap()), &[]).unwrap();
            let got = ch.recv().unwrap();
            assert_eq!(hex(&got.bytes), v[expect].as_str().unwrap(), "{send}");
            assert!(got.handles.is_empty());
        }
        // Calls that fail the checks: the FAULT of the shared file, for that
        // call, and the connection goes on.
        for bad in v["bad_calls"].as_array().unwrap() {
            let call = unhex(bad["call"].as_str().unwrap());
            ch.send(&call, &[]).unwrap();
            let got = ch.recv().unwrap();
            let what = bad["what"].as_str().unwrap();
            assert_eq!(got.bytes[1], 5, "a FAULT for: {what}");
            assert_eq!(got.bytes[8..16], call[8..16], "the call's id: {what}");
            let variant = u32::from_le_bytes(got.bytes[24..28].try_into().unwrap()) as usize;
            const FAULTS: [&str; 10] = [
                "Malformed",
                "UnknownMethod",
                "WrongKind",
                "WrongAccess",
                "TooManyHandles",
                "UnknownContext",
                "TooLarge",
                "Busy",
                "BadResult",
                "Panicked",
            ];
            assert_eq!(FAULTS[variant], bad["fault"].as_str().unwrap(), "{what}");
            if let Some(reply) = bad["reply"].as_str() {
                assert_eq!(hex(&got.bytes), reply, "{what}");
            }
        }
        drop(ch);
        drop(server.rt);
    });
}

#[test]
fn python_child_takes_a_read_only_file_startup_data_and_a_channel() {
    with_python(|py| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("app.toml");
        std::fs::write(&config, "port = 8080").unwrap();
        let file = std::fs::File::open(&config).unwrap();
        let mut cmd = peer(py, &["child"]);
        cmd.handle("config", &file)
            .startup_data(b"1 GiB, in spirit");
        let ch = cmd.channel().unwrap();
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let report = ch.recv().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&report.bytes),
            "config=port = 8080;file read;startup=1 GiB, in spirit"
        );
        drop(ch);
        wait_ok(child, "child");
    });
}

#[test]
fn python_echoes_every_kind_of_handle_and_fragmented_messages() {
    with_python(|py| {
        let (ch, child) = peer_on_channel(py, "echo");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x").unwrap();
        let (pipe_r, pipe_w) = std::io::pipe().unwrap();
        let event =
            Handle::from(rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap());
        let region = handoff::startup::create(b"shm").unwrap();
        let (sock, _other) = Channel::pair().unwrap();
        let handles: Vec<Handle> = vec![
            Handle::from(OwnedFd::from(std::fs::File::open(&path).unwrap())),
            Handle::from(OwnedFd::from(pipe_w)),
            Handle::from(OwnedFd::from(pipe_r)),
            event,
            region,
            sock.into_handle(),
            Handle::from(OwnedFd::from(std::fs::File::open(dir.path()).unwrap())),
        ];
        // Small, then one over the 256 KiB and 253-handle fragment limits
        // (the same descriptors many times), then an empty message.
        let many: Vec<_> = (0..300)
            .map(|i| handles[i % handles.len()].as_handle())
            .collect();
        let big: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let few: Vec<_> = handles.iter().map(|h| h.as_handle()).collect();
        for (bytes, sent) in [
            (&b"kinds"[..], &few[..]),
            (&big[..], &many[..]),
            (&[][..], &[][..]),
        ] {
            ch.send(bytes, sent).unwrap();
            let report = ch.recv().unwrap();
            let expected: String = sent
                .iter()
                .map(|h| {
                    let kind = h.kind().unwrap();
                    let access = service::report(&[h.try_clone_to_owned().unwrap()]);
                    assert!(access.starts_with(kind.name()));
                    access
                })
                .collect();
            assert_eq!(String::from_utf8_lossy(&report.bytes), expected);
            let echoed = ch.recv().unwrap();
            assert_eq!(echoed.bytes, bytes);
            assert_eq!(echoed.handles.len(), sent.len());
            for (back, orig) in echoed.handles.iter().zip(sent) {
                assert_eq!(inode(back), inode(orig), "the same object came back");
                assert_eq!(back.kind().unwrap().name(), orig.kind().unwrap().name());
                assert_eq!(back.access().unwrap(), orig.access().unwrap());
            }
        }
        assert!(matches!(handles[3].kind().unwrap(), Kind::Event));
        drop(ch);
        wait_ok(child, "echo");
    });
}

#[test]
fn python_decodes_and_reencodes_random_values() {
    with_python(|py| {
        let (ch, child) = peer_on_channel(py, "typed-echo");
        let (tx, rx): (Sender<Envelope>, Receiver<Envelope>) = ch.into_typed();
        for seed in 1..=300u64 {
            let sent = Rng(seed * 0x9e37_79b9).sample();
            tx.send(&Envelope::Sample(sent.clone())).unwrap();
            match rx.recv().unwrap() {
                Envelope::Sample(back) => assert_eq!(back, sent, "seed {seed}"),
                other => panic!("seed {seed}: got {other:?}"),
            }
        }
        // Handles inside a value come back as the same objects.
        let file = file_handle();
        let id = inode(&file);
        tx.send(&Envelope::Handles(WithHandles {
            label: "three".into(),
            maybe: Some(file.try_clone().unwrap()),
            many: vec![file.try_clone().unwrap(), file.try_clone().unwrap()],
            file,
        }))
        .unwrap();
        match rx.recv().unwrap() {
            Envelope::Handles(w) => {
                assert_eq!(w.label, "three");
                assert_eq!(inode(&w.file), id);
                assert_eq!(inode(w.maybe.as_ref().unwrap()), id);
                assert!(w.many.iter().all(|h| inode(h) == id) && w.many.len() == 2);
            }
            other => panic!("got {other:?}"),
        }
        drop((tx, rx));
        wait_ok(child, "typed-echo");
    });
}

/// Starts `peer.py rpc-server PATH` and waits for its `ready`.
fn python_server(py: &PathBuf, path: &std::path::Path) -> handoff::Child {
    let mut cmd = peer(py, &["rpc-server", path.to_str().unwrap()]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out = std::fs::File::from(OwnedFd::from(child.take_stdout().unwrap()));
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

#[test]
fn a_rust_client_calls_a_python_server() {
    with_python(|py| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("py.sock");
        let mut child = python_server(py, &path);
        service::rpc_client(path.to_str().unwrap()).unwrap();

        // The handshake names both sides when the interfaces differ.
        mod other {
            #[handoff::interface(name = "interop.Files", version = 1)]
            pub trait Files {
                async fn write_file(&self, text: String) -> Result<u64, String>;
            }
        }
        match other::FilesBlockingClient::connect(&path) {
            Err(e @ handoff::Error::InterfaceMismatch { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("{:016x}", FilesClient::IDENTITY.hash)),
                    "{text}"
                );
            }
            other => panic!("expected a mismatch, got {:?}", other.map(drop)),
        }
        let stdin = child.take_stdin().unwrap();
        std::fs::File::from(OwnedFd::from(stdin))
            .write_all(b"")
            .unwrap();
        wait_ok(child, "rpc-server");
    });
}

#[test]
fn a_python_client_calls_a_rust_server() {
    with_python(|py| {
        let server = rust_server();
        let child = peer(py, &["rpc-client", server.path.to_str().unwrap()])
            .spawn()
            .unwrap();
        wait_ok(child, "rpc-client");
        drop(server.rt);
    });
}
