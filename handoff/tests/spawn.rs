//! Spawning children with exactly the chosen handles, on every platform:
//! the child's side of the convention, startup data, a channel to the
//! child, errors. Unix-only checks are in `unix_spawn.rs`, Windows-only ones
//! in `windows_spawn.rs`.

mod common;

use std::io::Write;

use common::*;
use handoff::{Access, AsHandle, Command, Error, Expect, Inherited, Kind, KindName, StartupData};
use serde::{Deserialize, Serialize};

#[test]
fn named_handles_reach_the_child_checked_and_claimed_once() {
    if role().is_some() {
        let mut inherited = Inherited::from_env().unwrap();
        assert_eq!(
            inherited.names().collect::<Vec<_>>(),
            ["config", "mem", "log"]
        );
        assert!(
            std::env::var("LISTEN_FDNAMES").is_err(),
            "variables are unset"
        );
        let config = claim_read_only_config(&mut inherited);
        assert_eq!(read_all(&config), b"x=1");
        let mem = inherited
            .take_checked(
                "mem",
                &Expect::kind(KindName::SharedMemory).min_size(64 + 3),
            )
            .unwrap();
        assert!(!mem.is_inheritable().unwrap());
        let e = inherited
            .take_checked("log", &Expect::kind(KindName::File).access(Access::READ))
            .unwrap_err();
        assert!(matches!(e, Error::WrongAccess { .. }), "{e}");
        assert_claims_refused(&mut inherited, "mem");
        return;
    }
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config");
        std::fs::write(&config_path, b"x=1").unwrap();
        let config = std::fs::File::open(&config_path).unwrap();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.path().join("log"))
            .unwrap();
        let mem = shared_memory(b"abc");
        run_child_with_handles(
            this_test!(),
            &[
                ("config", config.as_handle()),
                ("mem", mem.as_handle()),
                ("log", log.as_handle()),
            ],
        );
    });
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Params<'a> {
    magic: u32,
    name: &'a str,
    #[serde(with = "serde_bytes")]
    blob: &'a [u8],
}

#[test]
fn startup_data_survives_its_parent() {
    let big: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 253) as u8).collect();
    match role().as_deref() {
        Some("launcher") => {
            // Fire and forget: spawn and exit before the child looks.
            let result = std::io::stdout().as_handle().try_clone_to_owned().unwrap();
            let _child = self_command(this_test!(), "child")
                .startup_data(&big)
                .handle("result", &result)
                .spawn()
                .unwrap();
            std::process::exit(0);
        }
        Some(_) => {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut inherited = Inherited::from_env().unwrap();
            let data = inherited.startup_data().unwrap();
            assert!(data.bytes() == big);
            let mut out = std::fs::File::from(inherited.take("result").unwrap());
            out.write_all(b"verified").unwrap();
        }
        None => {
            let _serial = serial();
            let leaks = LeakCheck::new();
            {
                let mut launcher = self_command(this_test!(), "launcher")
                    .stdout(handoff::spawn::Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = read_text(launcher.take_stdout().unwrap());
                assert!(launcher.wait().unwrap().success());
                assert!(out.contains("verified"), "{out}");
            }
            leaks.assert();
        }
    }
}

#[test]
fn startup_value_is_read_zero_copy_and_a_channel_comes_along() {
    if role().is_some() {
        let mut inherited = Inherited::from_env().unwrap();
        let data = inherited.startup_data().unwrap();
        let params: Params<'_> = data.value().unwrap();
        assert_eq!(params.magic, 0xfeed);
        assert_eq!(params.name, "worker-1");
        assert_eq!(params.blob.len(), 100_000);
        // Borrowed straight from the read-only mapping.
        let range = data.bytes().as_ptr_range();
        assert!(range.contains(&params.blob.as_ptr()));
        let ch = inherited.channel().unwrap();
        let msg = ch.recv().unwrap();
        ch.send(b"thanks", &[msg.handles[0].borrow()]).unwrap();
        return;
    }
    without_leaks(|| {
        let blob = vec![5u8; 100_000];
        let mut cmd = self_command(this_test!(), "child");
        let ch = cmd.channel().unwrap();
        cmd.startup_value(&Params {
            magic: 0xfeed,
            name: "worker-1",
            blob: &blob,
        });
        let mut child = cmd.spawn().unwrap();
        if let Some(h) = child.exit_handle() {
            assert_eq!(h.kind().unwrap(), Kind::Process);
        }
        let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        ch.send(b"here", &[file.as_handle()]).unwrap();
        let back = ch.recv().unwrap();
        assert_eq!(back.bytes, b"thanks");
        assert_eq!(back.handles[0].kind().unwrap(), Kind::File);
        assert!(child.wait().unwrap().success());
        drop(back);
    });
}

/// A command that starts this test binary, runs no test, and exits 0.
fn trivial() -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "no test has this name"])
        .stdout(handoff::spawn::Stdio::null());
    cmd
}

#[test]
fn spawn_errors_close_the_handles() {
    without_leaks(|| {
        let f = null_file();
        let e = Command::new("/nonexistent/program")
            .handle("x", &f)
            .spawn()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = Command::new("no-such-program-anywhere")
            .handle("x", &f)
            .spawn()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = trivial().handle("a:b", &f).spawn().unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = trivial().handle("", &f).spawn().unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        // The command is usable again after an error.
        let mut cmd = trivial();
        assert!(cmd.handle("", &f).spawn().is_err());
        assert!(cmd
            .handle("ok", &f)
            .spawn()
            .unwrap()
            .wait()
            .unwrap()
            .success());
    });
}

/// The three values of an inheritance convention (count or handles,
/// pid, names), each possibly unset.
type ConventionValues<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// `parse`, the reading of one convention, refuses each of `cases` (for
/// pid 7) as bad inheritance naming the variable, the peer's fault.
fn assert_each_refused<T: std::fmt::Debug>(
    cases: &[ConventionValues<'_>],
    parse: impl Fn(Option<&str>, Option<&str>, Option<&str>, u32) -> handoff::Result<T>,
) {
    for &(handles, pid, names) in cases {
        let e = parse(handles, pid, names, 7).unwrap_err();
        assert!(
            matches!(e, Error::BadInheritance { var: Some(_), .. }),
            "{handles:?} {pid:?} {names:?}: {e}"
        );
        assert!(e.is_peer_fault());
    }
}

#[test]
fn parse_rejects_bogus_convention_values() {
    // The Unix convention (systemd's).
    let ok = Inherited::parse(Some("2"), Some("7"), Some("a:b"), 7).unwrap();
    assert_eq!(ok, ["a", "b"]);
    assert_eq!(Inherited::parse(None, None, None, 7).unwrap().len(), 0);
    assert_eq!(
        Inherited::parse(Some("2"), Some("7"), None, 7).unwrap(),
        ["unknown", "unknown"]
    );
    let unix_cases = [
        (Some("x"), Some("7"), None),
        (Some("-1"), Some("7"), None),
        (Some(""), Some("7"), None),
        (Some("1 "), Some("7"), None),
        (Some("99999999999999999999999"), Some("7"), None),
        (Some("100000"), Some("7"), None),
        (Some("1"), None, None),
        (Some("1"), Some("8"), None),
        (Some("1"), Some("-7"), None),
        (Some("1"), Some("seven"), None),
        (Some("2"), Some("7"), Some("only-one")),
        (Some("1"), Some("7"), Some("a:b")),
    ];
    assert_each_refused(&unix_cases, Inherited::parse);

    // The Windows convention.
    let ok =
        handoff::__private::parse_windows(Some("420:1236"), Some("7"), Some("a:b"), 7).unwrap();
    assert_eq!(ok, [("a".to_string(), 420), ("b".to_string(), 1236)]);
    assert!(handoff::__private::parse_windows(None, None, None, 7)
        .unwrap()
        .is_empty());
    assert_eq!(
        handoff::__private::parse_windows(Some("4"), Some("7"), None, 7).unwrap(),
        [("unknown".to_string(), 4)]
    );
    let windows_cases = [
        (Some("x"), Some("7"), None),
        (Some(""), Some("7"), None),
        (Some("0"), Some("7"), None),
        (Some("421"), Some("7"), None),
        (Some("4294967296"), Some("7"), None),
        (Some("-4"), Some("7"), None),
        (Some("8:8"), Some("7"), None),
        (Some("8:"), Some("7"), None),
        (Some("8"), None, None),
        (Some("8"), Some("6"), None),
        (Some("8"), Some("x"), None),
        (Some("8:12"), Some("7"), Some("only-one")),
        (Some("8"), Some("7"), Some("a:b")),
    ];
    assert_each_refused(&windows_cases, handoff::__private::parse_windows);
}

#[test]
fn startup_data_from_a_file_and_a_pipe() {
    without_leaks(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        let contents: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&p, &contents).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let len = f.metadata().unwrap().len();
        let h = handoff::startup::create_from(&f, Some(len)).unwrap();
        assert!(StartupData::open(h).unwrap().bytes() == contents);

        let (r, mut w) = std::io::pipe().unwrap();
        let writer = {
            let contents = contents.clone();
            std::thread::spawn(move || w.write_all(&contents).unwrap())
        };
        let h = handoff::startup::create_from(&r, None).unwrap();
        writer.join().unwrap();
        assert!(
            StartupData::open(h).unwrap().bytes() == contents,
            "a pipe, to its end"
        );

        let short = std::fs::File::open(&p).unwrap();
        assert!(matches!(
            handoff::startup::create_from(&short, Some(len + 1)),
            Err(Error::InvalidArgument(_))
        ));
    });
}
