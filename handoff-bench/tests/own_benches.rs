//! The benchmarks with their own modules end to end: their children start,
//! work and exit cleanly, and the rows carry the documented keys.

use std::process::Command;

#[test]
fn spawn_pidfd_and_rpc_rows_have_their_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff-bench"))
        .args([
            "--quick",
            "--json",
            "spawn_overhead",
            "pidfd_getfd",
            "rpc_rtt_1fd_pinned",
        ])
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
    assert_eq!(
        names,
        ["spawn_overhead", "pidfd_getfd", "rpc_rtt_1fd_pinned"]
    );
    for r in &rows {
        for key in ["unit", "baseline", "handoff", "speed", "baseline_socket"] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert!(r["speed"].as_f64().unwrap() > 0.0);
        // Nothing in ipc-channel does these jobs.
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
