//! The admin API's client, used by the CLI, the lab, the tests and the benchmarks: hyper
//! over the node's Unix socket, or over HTTPS with a client certificate.
//!
//! A target is a socket path (`/run/quorumsign/admin.sock`, `./node-1.sock`) or
//! `https://HOST:PORT` (a host name or an IP literal). HTTPS needs credentials: the CLI's
//! `--admin-cert`, `--admin-key` and `--admin-ca` ([`set_credentials`]), or the variables
//! `QUORUMSIGN_ADMIN_CERT`, `QUORUMSIGN_ADMIN_KEY` and `QUORUMSIGN_ADMIN_CA`.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

/// Every path of the API starts with this.
pub const PREFIX: &str = "/v1";

/// Largest answer read (a signed zone of a few million records).
const ANSWER_MAX: usize = 1 << 30;

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

pub use crate::access::Target;

/// A client certificate, its key and the CA that issued the node's server certificate.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();

/// Sets the credentials of every HTTPS call this process makes (the CLI's options).
pub fn set_credentials(c: Credentials) {
    let _ = CREDENTIALS.set(c);
}

fn credentials() -> Result<Credentials, String> {
    if let Some(c) = CREDENTIALS.get() {
        return Ok(c.clone());
    }
    let var = |n: &str| std::env::var_os(n).map(PathBuf::from);
    match (
        var("QUORUMSIGN_ADMIN_CERT"),
        var("QUORUMSIGN_ADMIN_KEY"),
        var("QUORUMSIGN_ADMIN_CA"),
    ) {
        (Some(cert), Some(key), Some(ca)) => Ok(Credentials { cert, key, ca }),
        _ => Err(
            "an https admin address needs --admin-cert, --admin-key and --admin-ca \
                  (or QUORUMSIGN_ADMIN_CERT, QUORUMSIGN_ADMIN_KEY, QUORUMSIGN_ADMIN_CA)"
                .into(),
        ),
    }
}

fn tls_config(c: &Credentials) -> Result<Arc<rustls::ClientConfig>, String> {
    use crate::transport::{client_config, load_chain, load_key, load_roots};
    let roots = load_roots(&c.ca).map_err(|e| e.to_string())?;
    let chain = load_chain(&c.cert).map_err(|e| e.to_string())?;
    let key = load_key(&c.key).map_err(|e| e.to_string())?;
    client_config(Arc::new(roots), chain, key, &c.cert).map_err(|e| e.to_string())
}

/// One request to the admin API at `admin`; `path` is below [`PREFIX`] (`/status`).
pub fn call(
    admin: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    call_as(admin, None, method, path, body, timeout)
}

/// As [`call`], over HTTPS with `creds` instead of the process's credentials.
pub fn call_as(
    admin: &str,
    creds: Option<&Credentials>,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    let target = Target::parse(admin)?;
    let creds = creds.cloned();
    // A change always carries a JSON body (the server refuses one without), `{}` at least.
    let body = match body {
        Some(b) => Some(serde_json::to_vec(b).unwrap_or_default()),
        None if matches!(method, "POST" | "PATCH" | "PUT") => Some(b"{}".to_vec()),
        None => None,
    };
    let run = move || -> Result<Answer, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            tokio::time::timeout(timeout, request(&target, creds, method, path, body))
                .await
                .map_err(|_| format!("{admin}: no answer in {timeout:?}"))?
        })
    };
    // A runtime cannot be started on a thread that drives one: such callers get a thread.
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err("admin call panicked".into()))
        })
    } else {
        run()
    }
}

async fn request(
    target: &Target,
    creds: Option<Credentials>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, String> {
    let shown = match target {
        Target::Unix(p) => p.display().to_string(),
        Target::Https { .. } => format!("https://{}", target.authority()),
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{PREFIX}{path}"))
        .header(hyper::header::HOST, target.authority());
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("{shown}: {e}"))?;
    let answer = match target {
        Target::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p)
                .await
                .map_err(|e| format!("cannot reach the admin socket {shown}: {e}"))?;
            send(s, req).await
        }
        Target::Https { host, port } => {
            let creds = match creds {
                Some(c) => c,
                None => credentials()?,
            };
            let tls = tls_config(&creds)?;
            let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("cannot reach the admin API at {shown}: {e}"))?;
            let name = ServerName::try_from(host.clone()).map_err(|e| format!("{shown}: {e}"))?;
            let s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, s)
                .await
                .map_err(|e| format!("{shown}: TLS: {e}"))?;
            send(s, req).await
        }
    };
    answer.map_err(|e| format!("{shown}: {e}"))
}

async fn send<S>(io: S, req: hyper::Request<Full<Bytes>>) -> Result<Answer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), ANSWER_MAX)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Answer { code, body })
}

/// As [`call`]. The node sends a change on to the leader itself; while there is no leader
/// (an election) it answers 503, and this retries for up to 15 s.
pub fn call_leader(
    admin: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Answer, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let a = call(admin, method, path, body, timeout)?;
        if a.code != 503 || a.json()["no_leader"] != Value::Bool(true) {
            return Ok(a);
        }
        if std::time::Instant::now() >= deadline {
            return Err("no leader (election in progress or no quorum); try again".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("/run/quorumsign/admin.sock"),
            Ok(Target::Unix("/run/quorumsign/admin.sock".into()))
        );
        assert_eq!(
            Target::parse("https://signer1.example.net:7201"),
            Ok(Target::Https {
                host: "signer1.example.net".into(),
                port: 7201
            })
        );
        assert_eq!(
            Target::parse("https://[::1]:7201").map(|t| t.authority()),
            Ok("[::1]:7201".into())
        );
        for bad in [
            "127.0.0.1:7201",
            "http://127.0.0.1:7201",
            "https://127.0.0.1",
            "https://a b:1",
            "https://x;touch:1",
            "https://x:0",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
