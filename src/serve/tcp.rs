//! DNS over TCP: our own connection loop around the same request handler.
//!
//! hickory-server's TCP loop reads the next request only after the handler has returned and
//! writes the queued responses only then, so a multi-message zone transfer would be built
//! whole in memory before its first byte leaves (a 1M-delegation AXFR made kdig time out).
//! Here each connection reads requests one at a time; AXFR and IXFR stream from the store
//! with the socket's own backpressure, everything else goes to [`DnsHandler`] with a
//! responder that encodes hickory's `MessageResponse` onto the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::MessageType;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;

use super::{Auth, DnsHandler, xfr};
use crate::dns::{our_name, tsig};

/// An idle connection is closed after this long.
const IDLE: Duration = Duration::from_secs(30);

/// The writing half of a connection, shared by the responder clones hickory makes.
#[derive(Clone)]
pub struct TcpResponder {
    w: Arc<Mutex<OwnedWriteHalf>>,
}

async fn write_msg(w: &Mutex<OwnedWriteHalf>, m: &[u8]) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(m.len() + 2);
    b.extend_from_slice(&(m.len() as u16).to_be_bytes());
    b.extend_from_slice(m);
    w.lock().await.write_all(&b).await
}

#[async_trait::async_trait]
impl ResponseHandler for TcpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut b = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut b);
        enc.set_max_size(u16::MAX);
        let info = response
            .destructive_emit(&mut enc)
            .map_err(|e| NetError::from(e.to_string()))?;
        write_msg(&self.w, &b)
            .await
            .map_err(|e| NetError::from(e.to_string()))?;
        Ok(info)
    }
}

#[async_trait::async_trait]
impl xfr::Sink for TcpResponder {
    async fn send(&mut self, message: &[u8]) -> Result<(), String> {
        write_msg(&self.w, message).await.map_err(|e| e.to_string())
    }
}

pub async fn serve(listener: tokio::net::TcpListener, handler: Arc<DnsHandler>) {
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("DNS TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let h = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, src, h).await {
                tracing::debug!(%src, "DNS TCP connection: {e}");
            }
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    src: SocketAddr,
    handler: Arc<DnsHandler>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (mut r, w) = stream.into_split();
    let mut responder = TcpResponder {
        w: Arc::new(Mutex::new(w)),
    };
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(IDLE, r.read_exact(&mut len)).await {
            Err(_) => return Ok(()),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
        let mut raw = vec![0u8; u16::from_be_bytes(len) as usize];
        tokio::time::timeout(IDLE, r.read_exact(&mut raw))
            .await
            .map_err(|_| "request cut short".to_string())?
            .map_err(|e| e.to_string())?;
        let request = match Request::from_bytes(raw, src, Protocol::Tcp) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%src, "malformed request over TCP: {e}");
                return Ok(());
            }
        };
        if request.metadata.message_type == MessageType::Response {
            continue;
        }
        let xfr = request
            .request_info()
            .ok()
            .map(|i| i.query.query_type())
            .filter(|t| *t == RecordType::AXFR || *t == RecordType::IXFR);
        let Some(qtype) = xfr else {
            handler
                .handle_request::<_, TokioTime>(&request, responder.clone())
                .await;
            continue;
        };
        // A transfer: TSIG first (a bad signature is answered by the handler, which
        // logs it), then the stream.
        let auth = match &request.signature {
            None => Auth::None,
            Some(_) => {
                match tsig::verify(
                    request.as_slice(),
                    handler.node.tsig(),
                    None,
                    false,
                    crate::runtime::wall(),
                ) {
                    Ok((t, key)) => Auth::Key(key, t.mac),
                    Err(_) => {
                        handler
                            .handle_request::<_, TokioTime>(&request, responder.clone())
                            .await;
                        continue;
                    }
                }
            }
        };
        let Some(qname) = request
            .request_info()
            .ok()
            .and_then(|i| our_name(i.query.original().name()))
        else {
            return Ok(());
        };
        xfr::transfer_tcp(
            &*handler.node,
            &mut responder,
            &request,
            &qname,
            u16::from(qtype),
            &auth,
        )
        .await?;
    }
}
