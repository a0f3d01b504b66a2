//! Starting a generation, watching it until it ends, and the checks made
//! on its processes through `/proc`: which sockets it holds, which
//! processes descend from it, which orphans it left.

use std::sync::Arc;
use std::time::SystemTime;

use handoff::process::ExitStatus;
use handoff::{Child, Command, Process};

use super::state::{describe_exit, Ended, Generation, Phase, Shared, State};

/// The variable telling each generation its number (also inherited by its
/// children, which lets the supervisor attribute the orphans it adopts).
pub(crate) const GENERATION_VAR: &str = "HANDOFF_GENERATION";

/// Starts the next generation with the listeners, then the stored
/// handles, and a thread that reaps it. Called with the state locked, so
/// the store cannot change under the spawn and the generation is known
/// before its first notification can arrive.
pub(crate) fn start(shared: &Arc<Shared>, state: &mut State) -> Result<u64, String> {
    state.next_number += 1;
    let number = state.next_number;
    let cfg = &shared.config;
    let (program, args) = cfg
        .command
        .split_first()
        .ok_or_else(|| "no command to run".to_owned())?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(handoff::restart::NOTIFY_SOCKET, &cfg.notify_path)
        .env(GENERATION_VAR, number.to_string());
    for l in &shared.listeners {
        cmd.handle(&l.name, &l.handle);
    }
    for s in &state.store.entries {
        cmd.handle(&s.name, &s.handle);
    }
    let child = cmd.spawn().map_err(|e| {
        format!(
            "could not start generation {number} ({}): {}",
            program.to_string_lossy(),
            crate::describe(&e)
        )
    })?;
    let pid = child.id();
    let main = match child
        .exit_handle()
        .map(|h| h.try_clone_to_owned())
        .transpose()
        .map_err(|e| crate::describe(&e))
        .and_then(|h| {
            h.ok_or_else(|| "no pidfd".to_owned())
                .and_then(|h| Process::from_handle(h).map_err(|e| crate::describe(&e)))
        }) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("could not hold generation {number} by pidfd: {e}"));
        }
    };
    tracing::info!(generation = number, pid, "started");
    state.generations.push(Generation {
        number,
        pid,
        main_pid: pid,
        first: Arc::clone(&main),
        main,
        phase: Phase::Starting,
        started: SystemTime::now(),
        status_text: None,
        ready: false,
        extend_until: None,
    });
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("gen-{number}"))
        .spawn(move || watch(shared, number, Waitee::Child(child)))
        .map_err(|e| format!("could not start a thread for generation {number}: {e}"))?;
    Ok(number)
}

/// What a watcher waits on: the spawned child, or (after `MAINPID=` moved
/// to an adopted descendant, or after this supervisor re-executed itself)
/// a process held by pidfd.
pub(crate) enum Waitee {
    Child(Child),
    Process(Arc<Process>),
}

fn wait(w: Waitee) -> ExitStatus {
    match w {
        Waitee::Child(mut c) => match c.wait() {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (Some(c), _) => ExitStatus::Code(c),
                    (_, Some(s)) => ExitStatus::Signal(s),
                    _ => ExitStatus::Unknown,
                }
            }
            Err(_) => ExitStatus::Unknown,
        },
        Waitee::Process(p) => p.wait().unwrap_or(ExitStatus::Unknown),
    }
}

/// Runs on its own thread: waits for the generation's main process to
/// exit, follows `MAINPID=` to a live successor, then records the end.
pub(crate) fn watch(shared: Arc<Shared>, number: u64, first: Waitee) {
    let mut waitee = first;
    loop {
        let status = wait(waitee);
        // What it sent before it exited is read before its end is judged.
        super::notify::flush(&shared);
        let mut state = shared.lock();
        let Some(g) = state.generation(number) else {
            return;
        };
        let pid = g.main_pid;
        // The process exited, but MAINPID= named another one that lives:
        // the generation goes on in it.
        if let Ok(None) = g.main.try_wait() {
            waitee = Waitee::Process(Arc::clone(&g.main));
            drop(state);
            continue;
        }
        let was = g.phase;
        let was_ready = g.ready;
        tracing::info!(generation = number, pid, "{}", describe_exit(status));
        state.record_end(Ended {
            number,
            status,
            was_ready,
        });
        let orphans = adopted_orphans(&state);
        let restart_on_its_own = was == Phase::Serving && !state.shutting_down && !state.restarting;
        drop(state);
        shared.changed.notify_all();
        stop_orphans(orphans, &shared);
        if restart_on_its_own {
            tracing::warn!(
                generation = number,
                "the serving generation {} on its own; starting a new one in 1 s",
                describe_exit(status)
            );
            let shared = Arc::clone(&shared);
            let _ = std::thread::Builder::new()
                .name("respawn".into())
                .spawn(move || respawn(&shared));
        }
        return;
    }
}

/// Starts generations until one serves (another restart, or shutdown,
/// may settle it first), waiting 1 s, then twice as long after each
/// failure, up to 30 s.
fn respawn(shared: &Arc<Shared>) {
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        std::thread::sleep(delay);
        {
            let state = shared.lock();
            let serving = state.generations.iter().any(|g| g.phase == Phase::Serving);
            if state.shutting_down || serving {
                return;
            }
        }
        match super::restart::trigger(shared) {
            Ok(_) => return,
            Err(line) => {
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
                tracing::warn!(
                    "no generation serves ({line}); trying again in {} s",
                    delay.as_secs()
                );
            }
        }
    }
}

/// Parent pid of `pid` from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(1)?.parse().ok()
}

/// True if `pid` is `root` or descends from it.
pub(crate) fn descends_from(mut pid: u32, root: u32) -> bool {
    for _ in 0..64 {
        if pid == root {
            return true;
        }
        match parent_of(pid) {
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `root` and every process descending from it.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let pids = all_pids();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for &c in &pids {
            if !out.contains(&c) && parent_of(c) == Some(p) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

/// Socket inodes held by `pid`.
pub(crate) fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let target = std::fs::read_link(e.ok()?.path()).ok()?;
        let t = target.to_str()?;
        t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// Names of the listeners no process of the generation holds (the trees
/// of its main process and of the process first spawned).
pub(crate) fn missing_listeners(shared: &Shared, roots: &[u32]) -> Vec<String> {
    let mut held = Vec::new();
    for &root in roots {
        for p in tree(root) {
            held.extend(socket_inodes(p));
        }
    }
    shared
        .listeners
        .iter()
        .filter(|l| l.identity.is_some_and(|i| !held.contains(&i)))
        .map(|l| l.name.clone())
        .collect()
}

fn generation_of(pid: u32) -> Option<u64> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        let v = kv
            .strip_prefix(GENERATION_VAR.as_bytes())?
            .strip_prefix(b"=")?;
        std::str::from_utf8(v).ok()?.parse().ok()
    })
}

/// Children of this supervisor that are no generation's main process but
/// carry the number of a generation that has ended: processes a
/// generation left behind (a daemon that double-forked), adopted here as
/// subreaper.
fn adopted_orphans(state: &State) -> Vec<(u32, u64)> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| parent_of(p) == Some(me))
        .filter(|&p| {
            !state
                .generations
                .iter()
                .any(|g| g.pid == p || g.main_pid == p)
        })
        .filter_map(|p| {
            let n = generation_of(p)?;
            let live = state.generations.iter().any(|g| g.number == n);
            (!live).then_some((p, n))
        })
        .collect()
}

/// Kills and reaps the leftovers of ended generations, by pidfd.
fn stop_orphans(orphans: Vec<(u32, u64)>, _shared: &Shared) {
    for (pid, number) in orphans {
        // Our unreaped child: its pid cannot have been reused.
        if let Ok(p) = Process::open(pid) {
            if number != 0 {
                tracing::warn!(
                    pid,
                    generation = number,
                    "a process left behind by an ended generation; killing it"
                );
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Reaps adopted orphans of ended generations (call after any end).
pub(crate) fn sweep(shared: &Shared) {
    let orphans = adopted_orphans(&shared.lock());
    stop_orphans(orphans, shared);
}
