//! What `/proc` says about the supervisor: its open descriptors, its
//! children, and whether any is a zombie.

use std::path::PathBuf;

/// Open descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// `(pid, state)` of every process whose parent is `parent`.
pub fn children(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat"))).ok()?;
            let (state, ppid) = parse_stat(&stat)?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// State and parent pid from a `/proc/PID/stat` line (the command name, in
/// parentheses, may itself hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Children that are not zombies.
pub fn live_children(parent: u32) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|&(_, s)| s != 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// Children that are zombies.
pub fn zombies(parent: u32) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|&(_, s)| s == 'Z')
        .map(|(p, _)| p)
        .collect()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .is_some_and(|(state, _)| state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        assert_eq!(parse_stat("42 (a b) c) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("9 (x) Z 1 9"), Some(('Z', 1)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
