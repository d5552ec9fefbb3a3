//! Node-to-node RPC: TCP, mutual TLS, length-delimited bincode-2 frames.
//!
//! ```text
//!  client                                   server
//!   ── TLS handshake (both present certs of the cluster CA) ──
//!   Hello{from: id}  ─────────────────────►  cert valid for node-<id>.quorumsign?
//!                                            id a member (or a configured peer)?
//!                    ◄─────────────────────  Welcome | Refused(reason) + close
//!   Append / Vote / SnapshotPart / Transfer ─►  raft.* ─► reply
//! ```
//! A node's certificate binds its id through the DNS name `node-<id>.quorumsign`; a client
//! verifies the server's the same way, so neither side can be impersonated by another
//! member.

pub mod certs;

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::replica::machine::Snapshot;
use crate::replica::{NodeAddr, NodeId, Raft, TypeConfig, decode, encode};

/// Largest frame accepted: a Raft batch of staged chunks or a snapshot part.
const FRAME_MAX: usize = 256 << 20;
/// Snapshots travel in parts of this size.
const SNAPSHOT_PART: usize = 8 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of an append request that carries entries.
const APPEND_TIMEOUT: Duration = Duration::from_secs(30);

pub fn node_dns_name(id: NodeId) -> String {
    format!("node-{id}.quorumsign")
}

#[derive(Serialize, Deserialize)]
pub enum Request {
    Hello {
        from: NodeId,
    },
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    SnapshotPart {
        vote: VoteOf<TypeConfig>,
        meta: SnapshotMetaOf<TypeConfig>,
        data: Vec<u8>,
        done: bool,
    },
    Transfer(TransferLeaderRequest<TypeConfig>),
    /// What a node needs from another beside Raft (clock, status, init, a forwarded admin
    /// request): answered by the node's [`ControlHandler`].
    Control(Control),
}

/// Node-to-node control: typed requests authenticated by the node certificates, never the
/// admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Control {
    /// The answering node's wall clock (Unix seconds).
    Time,
    /// The answering node's status, as `GET /v1/status` gives it (JSON).
    Status,
    /// Initialise the answering node's Raft with the members of its config (`cluster init`).
    Init,
    /// The answering node's store: identity and incarnation.
    Identity,
    /// What the answering node knows of node `of`'s store: its replicated state's record
    /// and the last incarnation `of` announced to it.
    StoreRecord { of: NodeId },
    /// The sending node runs as this store and incarnation: the answering node keeps that
    /// durably before it answers `Done`.
    Announce { store: String, incarnation: u64 },
    /// Wipe this node's store and stop, to re-learn everything from the leader once
    /// started again (`node rejoin`); refused by a leader, and by a node whose store is
    /// not known to be restored from an old copy unless `force`.
    Rejoin { force: bool },
    /// An admin request authenticated by the sending node, to be carried out by the
    /// answering node (the leader) on behalf of `caller`.
    Admin {
        caller: crate::access::Caller,
        method: String,
        path: String,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlReply {
    Time(u64),
    /// JSON text.
    Status(Vec<u8>),
    Done,
    /// An admin answer: HTTP status code and JSON body.
    Admin {
        code: u16,
        body: Vec<u8>,
    },
    Identity {
        store: String,
        incarnation: u64,
    },
    StoreRecord {
        record: Option<crate::replica::StoreRecord>,
        /// (store, incarnation) the node last announced to the answering one, and the
        /// index the answering node had applied when it kept that.
        announced: Option<(String, u64, u64)>,
        /// The last log index `record` reflects (what the answering node applied, and the
        /// entries of its log beyond).
        as_of: u64,
    },
    Failed(String),
}

/// Answers [`Control`] requests from node `from` (already authenticated).
pub type ControlHandler = Arc<
    dyn Fn(NodeId, Control) -> std::pin::Pin<Box<dyn Future<Output = ControlReply> + Send>>
        + Send
        + Sync,
>;

/// Deadline of one control request (a forwarded admin request may wait for a commit).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a control request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The request never left this node: it may be sent again.
    #[error("node {to}: not sent: {why}")]
    NotSent { to: NodeId, why: String },
    /// Sent, and no good answer: it may have been carried out.
    #[error("node {to}: {why}")]
    Failed { to: NodeId, why: String },
}

impl From<ControlError> for String {
    fn from(e: ControlError) -> String {
        e.to_string()
    }
}

#[derive(Serialize, Deserialize)]
pub enum Response {
    Welcome,
    Refused(String),
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    PartReceived,
    Snapshot(SnapshotResponse<TypeConfig>),
    Transfer(TransferLeaderResponse<TypeConfig>),
    Control(ControlReply),
    Failed(String),
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> io::Result<()> {
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {FRAME_MAX}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// The files of a node's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Client and server TLS configurations of one node.
#[derive(Clone)]
pub struct Tls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

fn tls_err(what: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", what.display()),
    )
}

impl Tls {
    pub fn load(f: &TlsFiles) -> io::Result<Tls> {
        let roots = Arc::new(load_roots(&f.ca)?);
        let (chain, key) = (load_chain(&f.cert)?, load_key(&f.key)?);
        Ok(Tls {
            server: server_config(roots.clone(), chain.clone(), key.clone_key(), f)?,
            client: client_config(roots, chain, key, &f.cert)?,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of the PEM file `path`, as trust anchors.
pub fn load_roots(path: &Path) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path).map_err(|e| tls_err(path, e))? {
        roots
            .add(c.map_err(|e| tls_err(path, e))?)
            .map_err(|e| tls_err(path, e))?;
    }
    Ok(roots)
}

/// The certificate chain of the PEM file `path`.
pub fn load_chain(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(path, e))
}

/// The private key of the PEM file `path`.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_err(path, e))
}

/// A server presenting `chain` and `key` (of the files `f`) that requires a client
/// certificate issued by one of `roots`.
pub fn server_config(
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    f: &TlsFiles,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| tls_err(&f.ca, e))?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&f.cert, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&f.cert, e))?;
    Ok(Arc::new(server))
}

/// A client that trusts `roots` and presents `chain` and `key` (of the file `cert`).
pub fn client_config(
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert: &Path,
) -> io::Result<Arc<rustls::ClientConfig>> {
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls_err(cert, e))?;
    Ok(Arc::new(client))
}

/// True when the peer's certificate is valid for `node-<id>.quorumsign`.
fn cert_names(cert: &CertificateDer<'_>, id: NodeId) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(node_dns_name(id)) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Who may talk to this node: decided per connection.
pub type Admit = Arc<dyn Fn(NodeId) -> bool + Send + Sync>;

/// Set while this node's Raft store is empty although the cluster may have run before (a
/// wiped data dir): such a node may have voted in a term it no longer remembers, so it
/// grants no vote until a leader has given it a log.
pub type Blank = Arc<std::sync::atomic::AtomicBool>;

/// Why this node grants no vote and acknowledges no append, while that is so: its store
/// is being checked against what the others know of it, or it was found restored from an
/// older copy (`node::restore`).
pub type Hold = Arc<std::sync::Mutex<Option<Held>>>;

/// What a [`Hold`] holds a node for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Its store is being compared with what the other members record of it.
    Checking,
    /// Its store was found restored from an older copy: how it was found.
    Restored(String),
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Checking => f.write_str(
                "store check: comparing this store with what the other members record of it",
            ),
            Held::Restored(why) => f.write_str(why),
        }
    }
}

/// The last append a leader got this node to accept: when, and the leader's commit index
/// then. Once this node has applied that index it knew itself current at that instant
/// (`Node::stale` bounds how long a node serves without knowing it).
pub type Contact =
    Arc<std::sync::Mutex<Option<(tokio::time::Instant, Option<crate::replica::LogId>)>>>;

/// Accepts Raft RPC connections until the listener fails.
pub async fn serve(
    listener: TcpListener,
    tls: Tls,
    raft: Raft,
    admit: Admit,
    guards: Guards,
    contact: Contact,
    control: ControlHandler,
) {
    let Guards { blank, hold } = guards;
    let acceptor = TlsAcceptor::from(tls.server);
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("raft listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, raft, admit, blank, hold, contact, control) = (
            acceptor.clone(),
            raft.clone(),
            admit.clone(),
            blank.clone(),
            hold.clone(),
            contact.clone(),
            control.clone(),
        );
        tokio::spawn(async move {
            let guards = Guards { blank, hold };
            if let Err(e) = connection(sock, acceptor, raft, admit, guards, contact, control).await
                && e.kind() != io::ErrorKind::UnexpectedEof
            {
                tracing::info!(%peer, "raft connection closed: {e}");
            }
        });
    }
}

async fn connection(
    sock: TcpStream,
    acceptor: TlsAcceptor,
    raft: Raft,
    admit: Admit,
    guards: Guards,
    contact: Contact,
    control: ControlHandler,
) -> io::Result<()> {
    let Guards { blank, hold } = guards;
    sock.set_nodelay(true)?;
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let hello: Request = decode(&read_frame(&mut tls).await?)?;
    let Request::Hello { from } = hello else {
        return Err(io::Error::other("first frame is not Hello"));
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned());
    let refusal = match cert {
        None => Some("no client certificate".to_string()),
        Some(c) if !cert_names(&c, from) => Some(format!(
            "certificate is not valid for {}",
            node_dns_name(from)
        )),
        Some(_) if !admit(from) => Some(format!("node {from} is not a member of this cluster")),
        Some(_) => None,
    };
    if let Some(why) = refusal {
        tracing::warn!("refused RPC connection claiming node {from}: {why}");
        write_frame(&mut tls, &encode(&Response::Refused(why.clone()))).await?;
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    }
    write_frame(&mut tls, &encode(&Response::Welcome)).await?;
    let mut snapshot_buf: Vec<u8> = Vec::new();
    loop {
        let frame = read_frame(&mut tls).await?;
        let req: Request = if frame.len() > 1 << 20 {
            crate::runtime::blocking(|| decode(&frame))?
        } else {
            decode(&frame)?
        };
        let resp = match req {
            Request::Hello { .. } => Response::Failed("Hello twice".into()),
            Request::Append(_)
            | Request::Vote(_)
            | Request::SnapshotPart { .. }
            | Request::Transfer(_)
                if held(&hold).is_some() =>
            {
                let why = held(&hold).unwrap_or_default();
                Response::Failed(format!("node held: {why}"))
            }
            Request::Append(r) => {
                let (at, commit) = (tokio::time::Instant::now(), r.leader_commit);
                match raft.append_entries(r).await {
                    Ok(x) => {
                        if matches!(x, AppendEntriesResponse::Success) {
                            *contact.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, commit));
                        }
                        Response::Append(x)
                    }
                    Err(e) => Response::Failed(e.to_string()),
                }
            }
            Request::Vote(r) if blank.load(std::sync::atomic::Ordering::SeqCst) => {
                tracing::warn!(
                    candidate = %r.vote,
                    "vote refused: this node's store is empty and it has not heard a leader yet"
                );
                Response::Failed("blank node: no vote until a leader has given it a log".into())
            }
            Request::Vote(r) => match raft.vote(r).await {
                Ok(x) => Response::Vote(x),
                Err(e) => Response::Failed(e.to_string()),
            },
            Request::SnapshotPart {
                vote,
                meta,
                data,
                done,
            } => {
                snapshot_buf.extend_from_slice(&data);
                if !done {
                    Response::PartReceived
                } else {
                    let snap = Snapshot {
                        meta,
                        snapshot: io::Cursor::new(std::mem::take(&mut snapshot_buf)),
                    };
                    match raft.install_full_snapshot(vote, snap).await {
                        Ok(x) => Response::Snapshot(x),
                        Err(e) => Response::Failed(e.to_string()),
                    }
                }
            }
            Request::Transfer(r) => match raft.handle_transfer_leader(r).await {
                Ok(x) => Response::Transfer(x),
                Err(e) => Response::Failed(e.to_string()),
            },
            Request::Control(_) if control_dropped(from) => {
                // Fault injection: as if the request never arrived.
                return Ok(());
            }
            Request::Control(c) => Response::Control(control(from, c).await),
        };
        write_frame(&mut tls, &encode(&resp)).await?;
    }
}

/// What keeps a node from voting or acknowledging.
pub struct Guards {
    pub blank: Blank,
    pub hold: Hold,
}

fn held(hold: &Hold) -> Option<String> {
    let h = hold.lock().unwrap_or_else(|e| e.into_inner());
    h.as_ref().map(Held::to_string)
}

type Stream = tokio_rustls::client::TlsStream<TcpStream>;

/// Opens an authenticated RPC connection to node `to` as node `me`.
pub async fn dial(
    tls: &Arc<rustls::ClientConfig>,
    me: NodeId,
    to: NodeId,
    addr: &str,
) -> io::Result<Stream> {
    let sock = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from(node_dns_name(to)).map_err(io::Error::other)?;
    let mut s = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(tls.clone()).connect(name, sock),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let welcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        write_frame(&mut s, &encode(&Request::Hello { from: me })).await?;
        read_frame(&mut s).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer to Hello"))??;
    match decode::<Response>(&welcome)? {
        Response::Welcome => Ok(s),
        Response::Refused(why) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
        _ => Err(io::Error::other("unexpected reply to Hello")),
    }
}

/// Chaos runs (`fault_control`'s `control = drop` or `control = drop:ID,ID`): control
/// requests to and from every node, or those listed, are dropped while Raft still flows.
static CONTROL_DROP: std::sync::Mutex<Option<Vec<NodeId>>> = std::sync::Mutex::new(None);

/// Sets which peers' control traffic is dropped (`Some(empty)`: every peer's); returns
/// whether that changed anything.
pub fn drop_control(peers: Option<Vec<NodeId>>) -> bool {
    let mut d = CONTROL_DROP.lock().unwrap_or_else(|e| e.into_inner());
    let changed = *d != peers;
    *d = peers;
    changed
}

fn control_dropped(peer: NodeId) -> bool {
    match &*CONTROL_DROP.lock().unwrap_or_else(|e| e.into_inner()) {
        None => false,
        Some(ids) => ids.is_empty() || ids.contains(&peer),
    }
}

/// Sends one control request to node `to` at `addr` over a connection of its own (the
/// Raft connections stay free for Raft), and waits at most `ttl` for the answer.
pub async fn control(
    tls: &Arc<rustls::ClientConfig>,
    me: NodeId,
    to: NodeId,
    addr: &str,
    req: Control,
    ttl: Duration,
) -> Result<ControlReply, ControlError> {
    let failed = |why: String| ControlError::Failed { to, why };
    if control_dropped(to) {
        return Err(failed("control traffic dropped (fault injection)".into()));
    }
    let not_sent = |why: String| ControlError::NotSent { to, why };
    let mut s = match tokio::time::timeout(ttl, dial(tls, me, to, addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(not_sent(e.to_string())),
        Err(_) => return Err(not_sent(format!("no connection in {ttl:?}"))),
    };
    let ask = async {
        write_frame(&mut s, &encode(&Request::Control(req))).await?;
        let frame = read_frame(&mut s).await?;
        decode::<Response>(&frame)
    };
    match tokio::time::timeout(ttl, ask).await {
        Err(_) => Err(failed(format!("no answer in {ttl:?}"))),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok(Response::Control(r))) => Ok(r),
        Ok(Ok(Response::Failed(m) | Response::Refused(m))) => Err(failed(m)),
        Ok(Ok(_)) => Err(failed("unexpected reply".into())),
    }
}

/// Makes one [`Peer`] per target.
#[derive(Clone)]
pub struct Network {
    pub me: NodeId,
    pub tls: Arc<rustls::ClientConfig>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Peer {
        Peer {
            me: self.me,
            target,
            addr: node.raft.clone(),
            tls: self.tls.clone(),
            conn: None,
        }
    }
}

pub struct Peer {
    me: NodeId,
    target: NodeId,
    addr: String,
    tls: Arc<rustls::ClientConfig>,
    conn: Option<Stream>,
}

enum CallError {
    Unreachable(io::Error),
    Network(io::Error),
    Remote(String),
}

impl CallError {
    fn rpc(self) -> RPCError<TypeConfig> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            CallError::Remote(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
    fn streaming(self) -> StreamingError<TypeConfig> {
        match self {
            CallError::Unreachable(e) => StreamingError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => StreamingError::Network(NetworkError::new(&e)),
            CallError::Remote(m) => StreamingError::Network(NetworkError::from_string(m)),
        }
    }
}

impl Peer {
    async fn call(&mut self, req: &Request, ttl: Duration) -> Result<Response, CallError> {
        if self.conn.is_none() {
            let c = dial(&self.tls, self.me, self.target, &self.addr)
                .await
                .map_err(CallError::Unreachable)?;
            self.conn = Some(c);
        }
        let conn = self.conn.as_mut().expect("connected");
        let body = crate::runtime::blocking(|| encode(req));
        let res = tokio::time::timeout(ttl, async {
            write_frame(conn, &body).await?;
            read_frame(conn).await
        })
        .await;
        let frame = match res {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                self.conn = None;
                return Err(CallError::Network(e));
            }
            Err(_) => {
                self.conn = None;
                return Err(CallError::Network(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from node {} in {ttl:?}", self.target),
                )));
            }
        };
        match decode::<Response>(&frame).map_err(CallError::Network)? {
            Response::Failed(m) | Response::Refused(m) => Err(CallError::Remote(m)),
            r => Ok(r),
        }
    }
}

fn unexpected() -> CallError {
    CallError::Remote("unexpected reply".into())
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft's deadline suits heartbeats; a request carrying entries of a large
        // version needs time to travel and be flushed on the follower.
        let ttl = if rpc.entries.is_empty() {
            option.hard_ttl()
        } else {
            option.hard_ttl().max(APPEND_TIMEOUT)
        };
        match self.call(&Request::Append(rpc), ttl).await {
            Ok(Response::Append(r)) => Ok(r),
            Ok(_) => Err(unexpected().rpc()),
            Err(e) => Err(e.rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Response::Vote(r)) => Ok(r),
            Ok(_) => Err(unexpected().rpc()),
            Err(e) => Err(e.rpc()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = snapshot.snapshot.into_inner();
        let send = async {
            let parts: Vec<&[u8]> = if data.is_empty() {
                vec![&[]]
            } else {
                data.chunks(SNAPSHOT_PART).collect()
            };
            for (i, part) in parts.iter().enumerate() {
                let done = i + 1 == parts.len();
                let req = Request::SnapshotPart {
                    vote: vote.clone(),
                    meta: snapshot.meta.clone(),
                    data: part.to_vec(),
                    done,
                };
                match self.call(&req, Duration::from_secs(120)).await {
                    Ok(Response::PartReceived) if !done => {}
                    Ok(Response::Snapshot(r)) if done => return Ok(r),
                    Ok(_) => return Err(unexpected().streaming()),
                    Err(e) => return Err(e.streaming()),
                }
            }
            Err(unexpected().streaming())
        };
        tokio::select! {
            r = send => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&Request::Transfer(req), option.hard_ttl()).await {
            Ok(Response::Transfer(r)) => Ok(r),
            Ok(_) => Err(unexpected().rpc()),
            Err(e) => Err(e.rpc()),
        }
    }
}
