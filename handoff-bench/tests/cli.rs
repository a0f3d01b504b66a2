//! The binary end to end: children start, serve, and exit cleanly, and the
//! JSON lines carry the documented keys (the benchmarks with their own
//! modules included).

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_handoff-bench"))
}

/// Runs the benchmarks `names` in quick mode and returns their JSON rows,
/// after checking the run succeeded and each row has the keys every row
/// has (docs: "JSON output").
fn quick_json_rows(names: &[&str]) -> Vec<serde_json::Value> {
    let out = bench()
        .args(["--quick", "--json"])
        .args(names)
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
    for r in &rows {
        for key in ["unit", "baseline", "handoff", "speed", "baseline_socket"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert!(r["speed"].as_f64().unwrap() > 0.0);
    }
    rows
}

/// The names of `rows`, in order.
fn names(rows: &[serde_json::Value]) -> Vec<&str> {
    rows.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

#[test]
fn quick_json_rows_have_the_documented_keys() {
    let rows = quick_json_rows(&["rtt_1fd", "fd_throughput_253"]);
    assert_eq!(
        names(&rows),
        ["fd_throughput_253", "rtt_1fd", "rtt_1fd_pinned"]
    );
    // ipc-channel cannot send 253 handles in one message.
    assert!(rows[0]["ipc_channel"].is_null());
    assert!(rows[1]["ipc_channel"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["unit"], "us");
    assert!(rows[1]["p99_handoff"].as_f64().is_some());
}

/// The benchmarks with their own modules: their children start, work and
/// exit cleanly too, and their rows carry their own keys.
#[test]
fn spawn_pidfd_and_rpc_rows_have_their_keys() {
    let rows = quick_json_rows(&["spawn_overhead", "pidfd_getfd", "rpc_rtt_1fd_pinned"]);
    assert_eq!(
        names(&rows),
        ["spawn_overhead", "pidfd_getfd", "rpc_rtt_1fd_pinned"]
    );
    // Nothing in ipc-channel does these jobs.
    for r in &rows {
        assert!(r["ipc_channel"].is_null());
    }
    assert_eq!(rows[0]["unit"], "us");
    assert_eq!(rows[1]["unit"], "fds/s");
    assert!(rows[2]["pinned"].as_bool().unwrap());
    assert!(rows[2]["file_check_us"].as_f64().unwrap() > 0.0);
    // Experiments are listed with the rest, never as the baseline.
    let figures = rows[2]["figures"].as_array().unwrap();
    assert!(figures.iter().any(|f| f[0] == "rpc echo(u64), no handles"));
    assert_ne!(rows[2]["baseline_socket"], "rpc echo(u64), no handles");
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
