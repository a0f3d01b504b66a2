//! How this generation behaves: a good version, one of the bad versions the
//! restart campaign mixes in, or the naive handover of its negative control.

use std::fmt;

/// What this process does, chosen once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve, drain on SIGTERM, exit.
    Good,
    /// Exit with status 3 before saying `READY=1`.
    CrashBeforeReady,
    /// Never say `READY=1` (and never serve).
    HangBeforeReady,
    /// Say `READY=1`, then exit with status 4 at once, before accepting
    /// anything: a version whose start fails just after it said ready.
    /// (One that dies holding accepted connections loses those whatever
    /// the supervisor does; that is not what this mode measures.)
    CrashAfterReady,
    /// Say `READY=1`, then close every listener and idle.
    CloseListeners,
    /// Serve, and on SIGTERM stop accepting but never exit: the stop
    /// request is ignored and the supervisor must SIGKILL it at its drain
    /// deadline. (One that went on accepting after SIGTERM would lose the
    /// connections it holds when killed, whatever the supervisor does.)
    IgnoreStop,
    /// Takes the predecessor's offer and refuses its state (as a version
    /// that reads another state format would), then exits with status 5
    /// before `READY=1`.
    RefuseState,
    /// Accepts the state and is killed (`SIGKILL`, by itself) the moment
    /// the connections' descriptors arrive, before it acknowledges them.
    CrashTaking,
    /// Takes the connections (acknowledged, committed) and exits with
    /// status 7 before serving them or saying `READY=1`.
    CrashTaken,
    /// Lowers its descriptor limit so that about half the offered
    /// connections fit, takes what fits, and exits with status 8 before
    /// `READY=1` (out of descriptors halfway).
    FewDescriptors,
    /// Bind fresh `SO_REUSEPORT` sockets (addresses from
    /// `RESTART_SERVER_NAIVE_{HTTP,UDP,UNIX}`) instead of inheriting: the
    /// handover that loses connections, for the negative control.
    Naive,
}

impl Mode {
    pub const ALL: [Mode; 11] = [
        Mode::Good,
        Mode::CrashBeforeReady,
        Mode::HangBeforeReady,
        Mode::CrashAfterReady,
        Mode::CloseListeners,
        Mode::IgnoreStop,
        Mode::RefuseState,
        Mode::CrashTaking,
        Mode::CrashTaken,
        Mode::FewDescriptors,
        Mode::Naive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Good => "good",
            Mode::CrashBeforeReady => "crash-before-ready",
            Mode::HangBeforeReady => "hang-before-ready",
            Mode::CrashAfterReady => "crash-after-ready",
            Mode::CloseListeners => "close-listeners",
            Mode::IgnoreStop => "ignore-stop",
            Mode::RefuseState => "refuse-state",
            Mode::CrashTaking => "crash-taking",
            Mode::CrashTaken => "crash-taken",
            Mode::FewDescriptors => "few-descriptors",
            Mode::Naive => "naive",
        }
    }

    /// Whether this version takes its predecessor's state and connections.
    /// The versions that test the supervisor (bad starts, closed
    /// listeners) do not: their predecessor serves on untouched.
    pub fn takes_over(self) -> bool {
        matches!(
            self,
            Mode::Good
                | Mode::IgnoreStop
                | Mode::RefuseState
                | Mode::CrashTaking
                | Mode::CrashTaken
                | Mode::FewDescriptors
        )
    }

    /// The bad versions of the handover: each fails before it says
    /// `READY=1`. They accept nothing before their handover, so what they
    /// measure is the handover alone (a version that dies holding
    /// connections it accepted loses those, whatever the protocol).
    pub fn fails_handover(self) -> bool {
        matches!(
            self,
            Mode::RefuseState | Mode::CrashTaking | Mode::CrashTaken | Mode::FewDescriptors
        )
    }

    /// `RESTART_SERVER_MODE`, else the first line of
    /// `RESTART_SERVER_MODE_FILE`, else good. An unknown name is an error,
    /// not a silent good version.
    pub fn from_env() -> Result<Mode, String> {
        let text = match std::env::var("RESTART_SERVER_MODE") {
            Ok(v) => v,
            Err(_) => match std::env::var_os("RESTART_SERVER_MODE_FILE") {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("mode file {}: {e}", path.to_string_lossy()))?,
                None => return Ok(Mode::Good),
            },
        };
        let word = text.lines().next().unwrap_or("").trim();
        if word.is_empty() {
            return Ok(Mode::Good);
        }
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == word)
            .ok_or_else(|| {
                let known: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mode {word:?}; known: {}", known.join(", "))
            })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
