//! The binary end to end: children start, serve, and exit cleanly, and the
//! JSON lines carry the documented keys.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_handoff-bench"))
}

#[test]
fn quick_json_rows_have_the_documented_keys() {
    let out = bench()
        .args(["--quick", "--json", "rtt_1fd", "fd_throughput_253"])
        .output()
        .expect("run handoff-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fd_throughput_253", "rtt_1fd", "rtt_1fd_pinned"]);
    for r in &rows {
        for key in ["unit", "baseline", "handoff", "speed", "baseline_socket"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert!(r["speed"].as_f64().unwrap() > 0.0);
    }
    // ipc-channel cannot send 253 handles in one message.
    assert!(rows[0]["ipc_channel"].is_null());
    assert!(rows[1]["ipc_channel"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["unit"], "us");
    assert!(rows[1]["p99_handoff"].as_f64().is_some());
}

#[test]
fn an_unknown_name_is_an_error() {
    let out = bench()
        .args(["--quick", "no_such_bench"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no benchmark named"));
}
