//! An RPC server that runs out of descriptors while accepting keeps
//! serving once connections close, instead of returning from `serve`.
#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::*;
use handoff::rpc::Server;
use handoff::{AsyncListener, Channel};

#[handoff::interface(name = "handoff.test.Echo", version = 1)]
pub trait Echo {
    async fn echo(&self, v: u64) -> Result<u64, String>;
}

struct Impl;

impl Echo for Impl {
    async fn echo(&self, v: u64) -> Result<u64, String> {
        Ok(v)
    }
}

#[test]
fn a_server_out_of_descriptors_recovers() {
    if let Some(role) = role() {
        let path = role.strip_prefix("server:").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = AsyncListener::bind(path).unwrap();
            // Room for a few connections only.
            leave_room_for(6);
            let e = Server::new(EchoServer::new(Impl)).serve(listener).await;
            panic!("serve returned: {e:?}");
        });
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let mut server = spawn_plain(this_test!(), &format!("server:{}", path.display()));
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Far more connections than the server has descriptors for: it accepts
    // until EMFILE, and the rest wait in the backlog.
    let hogs: Vec<Channel> = (0..40).map(|_| Channel::connect(&path).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(hogs);
    let client_path = path.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = EchoBlockingClient::connect(&client_path).map(|c| c.echo(7));
        let _ = tx.send(format!("{result:?}"));
    });
    let answer = rx.recv_timeout(Duration::from_secs(20));
    let exited = server.try_wait().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(exited.is_none(), "the server stopped: {exited:?}");
    assert_eq!(answer.expect("the server answers again"), "Ok(Ok(7))");
}
