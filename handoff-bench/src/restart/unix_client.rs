//! One Unix-stream connection per request: `ping N` out, `gen=G pid=P ping N`
//! back, then end of file.

use std::path::Path;

use tokio::net::UnixStream;

use super::http_client::{exchange, generation_pid};
use super::outcome::Outcome;

pub async fn request(path: &Path, n: u64) -> Result<(), Outcome> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| Outcome::of_error(&e))?;
    let line = format!("ping {n}\n");
    let reply = exchange(&mut stream, line.as_bytes()).await?;
    if reply.is_empty() || !reply.ends_with(b"\n") {
        return Err(Outcome::Eof);
    }
    let text = std::str::from_utf8(&reply).map_err(|_| Outcome::Wrong)?;
    let label = text.strip_suffix(line.as_str()).ok_or(Outcome::Wrong)?;
    match label.strip_suffix(' ').and_then(generation_pid) {
        Some(_) => Ok(()),
        None => Err(Outcome::Wrong),
    }
}
