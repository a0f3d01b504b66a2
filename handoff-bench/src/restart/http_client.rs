//! One HTTP/1.1 request per new TCP connection (`Connection: close`), the
//! response parsed by `httparse` and its body checked to name a generation.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::outcome::Outcome;

/// Connects from `source` (a 127.0.0.x address: spreading the clients over
/// several sources keeps the ephemeral ports far from running out), asks
/// for `/?n=N`, reads to the end.
pub async fn request(server: SocketAddr, source: Ipv4Addr, n: u64) -> Result<(), Outcome> {
    let socket = TcpSocket::new_v4().map_err(|e| Outcome::of_error(&e))?;
    socket
        .bind(SocketAddr::from((source, 0)))
        .map_err(|e| Outcome::of_error(&e))?;
    let mut stream = socket
        .connect(server)
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    let request = format!("GET /?n={n} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
    let response = exchange(&mut stream, request.as_bytes()).await?;
    check(&response)
}

/// Sends `request` on a connection the server closes after one answer
/// (TCP here, a Unix stream for the Unix client) and reads that answer to
/// the end.
pub async fn exchange<S>(stream: &mut S, request: &[u8]) -> Result<Vec<u8>, Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(request)
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    let mut answer = Vec::with_capacity(256);
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    Ok(answer)
}

/// A complete `200` whose body is `gen=G pid=P` and as long as it says.
pub fn check(response: &[u8]) -> Result<(), Outcome> {
    if response.is_empty() {
        return Err(Outcome::Eof);
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(response) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(Outcome::Eof),
        Err(_) => return Err(Outcome::Wrong),
    };
    if parsed.code != Some(200) {
        return Err(Outcome::Wrong);
    }
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or(Outcome::Wrong)?;
    let body = &response[head..];
    if body.len() < length {
        return Err(Outcome::Eof);
    }
    let text = std::str::from_utf8(body).map_err(|_| Outcome::Wrong)?;
    match text.strip_suffix('\n').and_then(generation_pid) {
        Some(_) if body.len() == length => Ok(()),
        _ => Err(Outcome::Wrong),
    }
}

/// The serving process's pid from a `gen=G pid=P` label.
pub fn generation_pid(label: &str) -> Option<u32> {
    let mut words = label.split(' ');
    let generation = words.next()?.strip_prefix("gen=")?;
    let pid = words.next()?.strip_prefix("pid=")?.parse().ok()?;
    (!generation.is_empty() && words.next().is_none()).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_response_passes_and_broken_ones_are_classified() {
        let good = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\ngen=3 pid=12345\n";
        assert_eq!(check(good), Ok(()));
        assert_eq!(check(b""), Err(Outcome::Eof));
        assert_eq!(check(b"HTTP/1.1 200 OK\r\nContent-Le"), Err(Outcome::Eof));
        assert_eq!(
            check(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\ngen=3 pid"),
            Err(Outcome::Eof)
        );
        assert_eq!(
            check(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"),
            Err(Outcome::Wrong)
        );
        assert_eq!(
            check(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"),
            Err(Outcome::Wrong)
        );
    }
}
