//! The network namespace's own counters (`/proc/net/snmp`,
//! `/proc/net/netstat`): inside a private namespace nothing else moves
//! them, so their deltas are an exact oracle for resets and drops.

use std::collections::BTreeMap;

/// The counters the campaign judges, as `(file prefix, field, name shown)`.
pub const WATCHED: [(&str, &str, &str); 6] = [
    ("Tcp", "OutRsts", "TcpOutRsts"),
    ("Tcp", "EstabResets", "TcpEstabResets"),
    ("TcpExt", "ListenDrops", "TcpExtListenDrops"),
    ("TcpExt", "ListenOverflows", "TcpExtListenOverflows"),
    ("Udp", "NoPorts", "UdpNoPorts"),
    ("Udp", "RcvbufErrors", "UdpRcvbufErrors"),
];

/// A reading of the watched counters, by shown name.
pub type Counters = BTreeMap<&'static str, u64>;

/// Reads them now; a counter the kernel does not have reads as 0.
pub fn read() -> std::io::Result<Counters> {
    let mut text = std::fs::read_to_string("/proc/net/snmp")?;
    text.push_str(&std::fs::read_to_string("/proc/net/netstat")?);
    Ok(parse(&text))
}

/// Lines come in pairs, `Prefix: names...` then `Prefix: values...`.
pub fn parse(text: &str) -> Counters {
    let mut all = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                all.insert((p1.to_owned(), n.to_owned()), v);
            }
        }
    }
    WATCHED
        .iter()
        .map(|&(prefix, field, shown)| {
            (
                shown,
                all.get(&(prefix.to_owned(), field.to_owned()))
                    .copied()
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// `after - before`, per counter.
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .map(|(&k, &v)| (k, v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_paired_lines() {
        let text = "Tcp: RtoAlgorithm OutRsts EstabResets\nTcp: 1 7 2\n\
                    Udp: InDatagrams NoPorts RcvbufErrors\nUdp: 10 3 0\n\
                    TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 4 5\n";
        let c = parse(text);
        assert_eq!(c["TcpOutRsts"], 7);
        assert_eq!(c["TcpEstabResets"], 2);
        assert_eq!(c["UdpNoPorts"], 3);
        assert_eq!(c["TcpExtListenOverflows"], 4);
        assert_eq!(c["TcpExtListenDrops"], 5);
        let later = parse(&text.replace("1 7 2", "1 9 2"));
        assert_eq!(delta(&c, &later)["TcpOutRsts"], 2);
    }
}
