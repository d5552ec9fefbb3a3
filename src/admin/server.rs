//! The admin API's listeners: a Unix socket (callers known by uid) and, when `admin_listen`
//! is set, HTTPS with client certificates of the operator CA. Both serve one axum router;
//! every connection is authenticated before its request is read, and carries one request.
//!
//! What a request must be, whatever the listener:
//! - from an identity with a role (`access`); an unmapped uid or certificate gets 401;
//! - without an `Origin` header (no browser has business here: there is no CORS), and with
//!   a `Host` that names the listener (`localhost` on the socket; the listen address, a name
//!   of `admin.names` or `node-<id>.quorumsign` over HTTPS): DNS rebinding gets nowhere;
//! - a body, if any, of `Content-Type: application/json`, at most `admin.max_body_bytes`,
//!   read within `admin.body_timeout_ms`; a head within `admin.header_timeout_ms` and
//!   `admin.max_header_bytes`; at most `admin.max_connections` connections at once.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::access::{Caller, Proof, Role};
use crate::config::{AdminConfig, NodeConfig};
use crate::node::Node;

/// The bound listeners, made before the node starts serving (a busy port or socket stops
/// the start with the reason).
pub struct Listeners {
    unix: UnixListener,
    https: Option<(TcpListener, TlsAcceptor)>,
}

/// Which listener a request came through, for the Host check.
#[derive(Clone)]
enum Via {
    Unix,
    Https,
}

/// What a connection proved about its caller.
#[derive(Clone)]
struct Who(Result<Caller, String>, Via);

/// Binds the socket (mode 0660, `admin.socket_group`) and the HTTPS listener.
pub async fn bind(cfg: &NodeConfig) -> Result<Listeners, String> {
    let a = &cfg.admin;
    let path = &a.socket;
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("admin.socket {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
            .map_err(|e| format!("admin.socket {}: {e}", dir.display()))?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "admin.socket {}: another process answers on it",
                path.display()
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("admin.socket {}: {e}", path.display()))?;
    }
    // The socket is created without group or other bits, then opened to the group: no
    // moment in which others could connect.
    // SAFETY: umask only changes the process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let unix = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let unix = unix.map_err(|e| format!("admin.socket {}: {e}", path.display()))?;
    if let Some(g) = &a.socket_group {
        let gid = group_id(g).ok_or_else(|| format!("admin.socket_group {g:?}: no such group"))?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("admin.socket {}: chown: {e}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("admin.socket {}: {e}", path.display()))?;
    let https = match &cfg.admin_listen {
        None => None,
        Some(listen) => {
            let tcp = TcpListener::bind(listen)
                .await
                .map_err(|e| format!("admin_listen {listen}: {e}"))?;
            let tls = server_tls(cfg)?;
            Some((tcp, TlsAcceptor::from(tls)))
        }
    };
    Ok(Listeners { unix, https })
}

/// The node's certificate as server certificate; client certificates of the operator CA.
fn server_tls(cfg: &NodeConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    use crate::transport::{load_chain, load_key, load_roots, server_config};
    let ca = cfg
        .admin
        .operator_ca
        .clone()
        .expect("checked with the config");
    let files = crate::transport::TlsFiles {
        ca,
        ..cfg.tls_files()
    };
    let roots = load_roots(&files.ca).map_err(|e| format!("admin.operator_ca {e}"))?;
    let (chain, key) = (
        load_chain(&files.cert).map_err(|e| e.to_string())?,
        load_key(&files.key).map_err(|e| e.to_string())?,
    );
    server_config(Arc::new(roots), chain, key, &files).map_err(|e| e.to_string())
}

fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let c = std::ffi::CString::new(name).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into `grp` and `buf`, both live and of the sizes given.
    let r =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    (r == 0 && !out.is_null()).then_some(grp.gr_gid)
}

/// The login name of `uid`, if the system knows one.
fn user_name(uid: u32) -> Option<String> {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pw` and `buf`, both live and of the sizes given.
    let r = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    name.to_str().ok().map(str::to_string)
}

/// The caller on the socket: its uid's role in `admin.users`.
fn unix_caller(a: &AdminConfig, node: u64, uid: u32) -> Result<Caller, String> {
    let name = user_name(uid);
    let shown = name.clone().unwrap_or_else(|| uid.to_string());
    let role = a.user_role(name.as_deref(), uid).ok_or_else(|| {
        format!("unix user {shown} (uid {uid}) has no role on this node (admin.users)")
    })?;
    Ok(Caller {
        name: format!("unix:{shown}"),
        role,
        proof: Proof::Unix { uid },
        via: node,
    })
}

/// The caller behind a verified client certificate: its common name, and the role mapped to
/// it in `admin.certs` or else the role its `urn:quorumsign:role:` SAN names.
pub fn cert_caller(
    a: &AdminConfig,
    node: u64,
    cert: &CertificateDer<'_>,
) -> Result<Caller, String> {
    use x509_parser::prelude::*;
    let (_, x) =
        X509Certificate::from_der(cert.as_ref()).map_err(|e| format!("client certificate: {e}"))?;
    let cn = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_string)
        .ok_or("client certificate without a subject common name")?;
    let named: Vec<Role> = x
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => crate::access::role_of_uri(u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let role = match a.cert_role(&cn) {
        Some(r) => r,
        None if named.len() == 1 => named[0],
        None if named.len() > 1 => {
            return Err(format!("certificate {cn:?} names more than one role"));
        }
        None => return Err(format!("certificate {cn:?} has no role on this node")),
    };
    Ok(Caller {
        name: format!("cert:{cn}"),
        role,
        proof: Proof::Certificate,
        via: node,
    })
}

/// Serves both listeners until the node stops.
pub async fn serve(l: Listeners, node: Arc<Node>) {
    let a = node.cfg.admin.clone();
    let slots = Arc::new(Semaphore::new(a.max_connections));
    let router = router(node.clone());
    if let Some((tcp, acceptor)) = l.https {
        let (node, slots, router, a) = (node.clone(), slots.clone(), router.clone(), a.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, peer)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "admin connection refused: admin.max_connections reached");
                    continue;
                };
                let (acceptor, router, a, id) =
                    (acceptor.clone(), router.clone(), a.clone(), node.id);
                tokio::spawn(async move {
                    let hs = Duration::from_millis(a.handshake_timeout_ms);
                    let tls = match tokio::time::timeout(hs, acceptor.accept(sock)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, "admin TLS handshake refused: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "admin TLS handshake timed out");
                            return;
                        }
                    };
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned());
                    let who = match cert {
                        Some(c) => cert_caller(&a, id, &c),
                        None => Err("no client certificate".into()),
                    };
                    connection(tls, Who(who, Via::Https), router, &a).await;
                    drop(slot);
                });
            }
        });
    }
    loop {
        let Ok((sock, _)) = l.unix.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("admin socket connection refused: admin.max_connections reached");
            continue;
        };
        let cred = sock.peer_cred();
        let (router, a, id) = (router.clone(), a.clone(), node.id);
        tokio::spawn(async move {
            // The user name lookup may ask NSS (LDAP, …): not on the accept loop.
            let who = match cred {
                Ok(c) => {
                    let a = a.clone();
                    crate::runtime::spawn_blocking(move || unix_caller(&a, id, c.uid()))
                        .await
                        .unwrap_or_else(Err)
                }
                Err(e) => Err(format!("peer credentials: {e}")),
            };
            connection(sock, Who(who, Via::Unix), router, &a).await;
            drop(slot);
        });
    }
}

async fn connection<S>(io: S, who: Who, router: Router, a: &AdminConfig)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(who.clone());
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            Ok::<_, Infallible>(router.oneshot(req.map(Body::new)).await.into_response())
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(a.header_timeout_ms))
        .max_buf_size(a.max_header_bytes)
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), svc);
    let whole = Duration::from_millis(a.header_timeout_ms + a.body_timeout_ms)
        + Duration::from_secs(a.request_timeout_s);
    if tokio::time::timeout(whole, conn).await.is_err() {
        tracing::info!("admin connection closed after {whole:?}");
    }
}

fn router(node: Arc<Node>) -> Router {
    Router::new().fallback(dispatch).with_state(node)
}

fn refuse(code: StatusCode, msg: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec_pretty(&serde_json::json!({ "error": msg.into() })).unwrap_or_default(),
    )
        .into_response()
}

/// Is `host` (a Host header) a name of the listener the request came through?
fn host_allowed(node: &Node, via: &Via, host: &str) -> bool {
    match via {
        Via::Unix => host == "localhost",
        Via::Https => {
            let Some(listen) = &node.cfg.admin_listen else {
                return false;
            };
            let Ok(sa) = listen.parse::<std::net::SocketAddr>() else {
                return false;
            };
            let (name, port) = match host.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()),
                _ => (host, None),
            };
            if port.is_some_and(|p: u16| p != sa.port()) {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == sa.ip())
                || name.eq_ignore_ascii_case(&crate::transport::node_dns_name(node.id))
                || node
                    .cfg
                    .admin
                    .names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
        }
    }
}

async fn dispatch(
    State(node): State<Arc<Node>>,
    Extension(Who(who, via)): Extension<Who>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match who {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(target: "audit", %method, path = %uri.path(), "refused: {why}");
            return refuse(StatusCode::UNAUTHORIZED, why);
        }
    };
    if headers.contains_key(header::ORIGIN) {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused (the request carries an Origin header)",
        );
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match host {
        Some(h) if host_allowed(&node, &via, h) => {}
        Some(h) => {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!("Host {h:?} does not name this admin listener"),
            );
        }
        None => return refuse(StatusCode::BAD_REQUEST, "the request has no Host header"),
    }
    let a = &node.cfg.admin;
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|l| l.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body || matches!(method, Method::POST | Method::PATCH | Method::PUT) {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request bodies must be Content-Type: application/json",
            );
        }
    }
    let read = http_body_util::Limited::new(body, a.max_body_bytes).collect();
    let body = match tokio::time::timeout(Duration::from_millis(a.body_timeout_ms), read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body over admin.max_body_bytes = {}",
                    a.max_body_bytes
                ),
            );
        }
        Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, format!("request body: {e}")),
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not read within admin.body_timeout_ms = {}",
                    a.body_timeout_ms
                ),
            );
        }
    };
    let Some(path) = uri.path().strip_prefix(crate::admin::client::PREFIX) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {} (paths start with /v1/)", uri.path()),
        );
    };
    let r = crate::admin::handle(&node, &caller, method.as_str(), path, &body, false).await;
    (
        StatusCode::from_u16(r.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, r.content_type)],
        r.body,
    )
        .into_response()
}
