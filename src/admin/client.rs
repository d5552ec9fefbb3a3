//! A small client for the admin API, used by the CLI and the tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

pub struct Answer {
    pub code: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The error text of a failed call, or the body.
    pub fn message(&self) -> String {
        match self.json().get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

/// One HTTP request to `addr`; no redirects.
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("admin address {addr:?}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        .map_err(|e| format!("cannot reach the admin API at {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(&body))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("{addr}: no answer: {e}"))?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}: malformed answer"))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: malformed status line"))?;
    Ok(Answer {
        code,
        body: buf[end + 4..].to_vec(),
    })
}

/// As [`call`], sent on to the leader when the node is not the leader. While there is no
/// leader (an election), it retries for up to 15 s.
pub fn call_leader(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut target = addr.to_string();
    loop {
        let a = match call(&target, method, path, body, timeout) {
            Ok(a) => a,
            // The leader we were sent to may have just died: start over from `addr`.
            Err(e) if target != addr && std::time::Instant::now() < deadline => {
                tracing::debug!("{e}; retrying");
                target = addr.to_string();
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(e) => return Err(e),
        };
        if a.code != 421 {
            return Ok(a);
        }
        if std::time::Instant::now() >= deadline {
            return Err("no leader (election in progress or no quorum); try again".into());
        }
        match a.json().get("leader_admin").and_then(Value::as_str) {
            Some(leader) if leader != target => target = leader.to_string(),
            _ => {
                target = addr.to_string();
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
