//! An unmodified server from outside the project under `handoff serve`:
//! gunicorn (PyPI) adopts `LISTEN_FDS` when `LISTEN_PID` is its own pid and
//! says `READY=1` on `NOTIFY_SOCKET` once its arbiter has booted. Debian's
//! `wrk` keeps new connections coming (`Connection: close`) while
//! `handoff restart` replaces it; wrk reports socket errors and non-2xx.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::supervisor::{Supervisor, Timeouts};

pub struct Gunicorn {
    pub summary: String,
    pub pass: bool,
}

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// `None` when gunicorn or wrk is not installed.
pub fn run(handoff: &Path, dir: &Path, restarts: usize) -> Option<Gunicorn> {
    let gunicorn = on_path("gunicorn")?;
    let wrk = on_path("wrk")?;
    eprintln!("restart campaign: gunicorn, {restarts} restarts under wrk ...");
    Some(match attempt(handoff, &gunicorn, &wrk, dir, restarts) {
        Ok(g) => g,
        Err(e) => Gunicorn {
            summary: format!("could not run: {e}"),
            pass: false,
        },
    })
}

fn attempt(
    handoff: &Path,
    gunicorn: &Path,
    wrk: &Path,
    dir: &Path,
    restarts: usize,
) -> crate::Result<Gunicorn> {
    let app_dir = dir.join("gunicorn-app");
    std::fs::create_dir_all(&app_dir)?;
    std::fs::write(
        app_dir.join("app.py"),
        "import os\n\ndef app(environ, start_response):\n    body = ('pid=%d\\n' % os.getpid()).encode()\n    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])\n    return [body]\n",
    )?;
    let address = "127.0.0.1:18100";
    let log = dir.join("gunicorn.log");
    let mut sup = Supervisor::start(
        handoff,
        &[format!("http=tcp:{address}")],
        &dir.join("gunicorn-control.sock"),
        Timeouts {
            ready: 20,
            drain: 10,
        },
        &[
            gunicorn.as_os_str(),
            "--chdir".as_ref(),
            app_dir.as_os_str(),
            "--workers".as_ref(),
            "2".as_ref(),
            "app:app".as_ref(),
        ],
        &[],
        &log,
    )?;
    let probe = || super::supervisor::probe_http(address.parse().expect("a fixed address"));
    sup.wait_serving(Duration::from_secs(30), probe)?;
    let seconds = restarts * 3 + 4;
    let load = Command::new(wrk)
        .args(["-t", "2", "-c", "16", "-d"])
        .arg(format!("{seconds}s"))
        .args(["-H", "Connection: close"])
        .arg(format!("http://{address}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let mut ok = 0;
    let mut reasons = Vec::new();
    for _ in 0..restarts {
        let t = sup.restart(&[]);
        if t.ok {
            ok += 1;
        } else if reasons.len() < 3 {
            reasons.push(t.line);
        }
        std::thread::sleep(Duration::from_millis(2500));
    }
    let out = load.wait_with_output()?;
    sup.stop(Duration::from_secs(12));
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in")
                .map(|(n, _)| n.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    // wrk prints these lines only when the counts are not zero.
    let errors = text
        .lines()
        .find(|l| l.contains("Socket errors"))
        .map(str::trim);
    let non2xx = text.lines().find(|l| l.contains("Non-2xx")).map(str::trim);
    let pass = ok == restarts
        && errors.is_none()
        && non2xx.is_none()
        && requests != "?"
        && requests != "0";
    let mut summary = format!(
        "{ok}/{restarts} restarts, {requests} requests, {}, {}",
        errors.unwrap_or("0 socket errors"),
        non2xx.unwrap_or("0 non-2xx")
    );
    if !reasons.is_empty() {
        summary.push_str(&format!(" (restart failures: {})", reasons.join("; ")));
    }
    Ok(Gunicorn { summary, pass })
}
