//! DNS on every node: queries, AXFR/IXFR out, NOTIFY in, TSIG — over the replicated store.
//!
//! hickory-server runs the UDP and TCP sockets; [`DnsHandler`] answers from the version
//! this node last validated (see [`view`]). Answers are built from the stored wire RRsets
//! without re-signing anything. Transfers need a TSIG key and an ACL entry of the zone.

pub mod answer;
pub mod notify;
pub mod tcp;
pub mod xfr;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::dns::tsig::{self, TsigKey};
use crate::dns::{hname, our_name};
use crate::replica::machine::StateMachine;
use crate::replica::state::{ClusterState, ZoneState};
use crate::replica::view::{Overlay, View};
use crate::zone::Name;
use answer::Rr;

/// Largest message of a transfer, before the TSIG record.
pub const XFR_MESSAGE_BYTES: usize = 60_000;

/// Starts the DNS listeners of `node` (UDP and TCP on `dns.listen`).
pub async fn start(node: Arc<dyn Source>, listen: &str) -> Result<(), String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("dns.listen {listen:?}: {e}"))?;
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| format!("dns.listen {addr} (UDP): {e}"))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("dns.listen {addr} (TCP): {e}"))?;
    let mut server = hickory_server::Server::new(DnsHandler { node: node.clone() });
    server.register_socket(udp);
    // TCP: our loop (see `tcp`), so zone transfers stream.
    tokio::spawn(tcp::serve(tcp, Arc::new(DnsHandler { node })));
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!("DNS server stopped: {e}");
        }
    });
    tracing::info!(%addr, "serving DNS (UDP and TCP)");
    Ok(())
}

pub struct DnsHandler {
    pub node: Arc<dyn Source>,
}

/// The version of a zone a node serves: its serial and token, and the overlay back to it
/// from the replicated content when the newest version is not validated there (yet).
pub type Served = (u32, crate::replica::Token, Option<Arc<Overlay>>);

/// What the DNS server needs of the node it runs in: the replicated state, the TSIG keys,
/// and the node's judgement of what it may serve.
pub trait Source: Send + Sync + 'static {
    /// The replicated state.
    fn state(&self) -> &StateMachine;
    /// The TSIG keys of `[[tsig]]`.
    fn tsig(&self) -> &[TsigKey];
    /// The version of `zone` (whose state is `z`) to answer from; `None`: do not answer for
    /// it (no validated version, or this node is not known to be current).
    fn served(&self, zone: &str, z: &ZoneState) -> Option<Served>;
    /// Whether transfers out are refused now (a self-fenced leader set to stop them).
    fn transfers_stopped(&self) -> bool;
    /// The primary of `zone` sent a NOTIFY: the leader fetches at its next tick.
    fn notified(&self, zone: String);
}

/// A stored record as a hickory record, its rdata passed through as stored.
pub fn to_record(rr: &Rr) -> Record {
    let mut r = Record::from_rdata(
        hname(&rr.owner),
        rr.ttl,
        RData::Unknown {
            code: RecordType::from(rr.rtype),
            rdata: NULL::with(rr.rdata.to_vec()),
        },
    );
    r.dns_class = DNSClass::IN;
    r
}

/// The zone (by name) that holds `qname`: the longest served origin above it.
pub fn zone_of(st: &ClusterState, qname: &Name) -> Option<(String, Name)> {
    let mut n = Some(qname.clone());
    while let Some(c) = n {
        let text = c.to_text();
        if st.zones.get(&text).is_some_and(|z| z.config.is_some()) {
            return Some((text, c));
        }
        n = c.parent();
    }
    None
}

/// How a request was authenticated.
#[derive(Clone)]
pub enum Auth {
    None,
    /// Verified with this key; responses carry a TSIG chained to the request MAC.
    Key(TsigKey, Vec<u8>),
}

impl Auth {
    pub fn key_name(&self) -> Option<String> {
        match self {
            Auth::Key(k, _) => Some(k.name.to_text()),
            Auth::None => None,
        }
    }
}

/// Sends one response, TSIG-signed when the request was. Returns the MAC it carried.
#[allow(clippy::too_many_arguments)]
pub async fn send<R: ResponseHandler>(
    rh: &mut R,
    request: &Request,
    meta: Metadata,
    edns: Option<&Edns>,
    answers: &[Record],
    authority: &[Record],
    additional: &[Record],
    auth: &Auth,
    prior: Option<&[u8]>,
    timers_only: bool,
) -> Result<(ResponseInfo, Option<Vec<u8>>), String> {
    let mut mac = None;
    let mut signature = None;
    if let Auth::Key(key, req_mac) = auth {
        let mut tbs = Vec::with_capacity(4096);
        let mut enc = BinEncoder::new(&mut tbs);
        enc.set_max_size(max_size(request, edns));
        MessageResponseBuilder::new(&request.queries, edns)
            .build(
                meta,
                answers.iter(),
                authority.iter(),
                std::iter::empty(),
                additional.iter(),
            )
            .destructive_emit(&mut enc)
            .map_err(|e| format!("encoding response: {e}"))?;
        let time = crate::runtime::wall();
        let m = tsig::sign_mac(
            &tbs,
            key,
            Some(prior.unwrap_or(req_mac)),
            timers_only,
            time,
            0,
        );
        signature = Some(Box::new(tsig_record(key, time, m.clone(), meta.id, None)));
        mac = Some(m);
    }
    let mut resp = MessageResponseBuilder::new(&request.queries, edns).build(
        meta,
        answers.iter(),
        authority.iter(),
        std::iter::empty(),
        additional.iter(),
    );
    if let Some(s) = signature {
        resp.set_signature(s);
    }
    let info = rh
        .send_response(resp)
        .await
        .map_err(|e| format!("sending response: {e}"))?;
    Ok((info, mac))
}

fn tsig_record(
    key: &TsigKey,
    time: u64,
    mac: Vec<u8>,
    id: u16,
    error: Option<TsigError>,
) -> Record<TSIG> {
    make_tsig_record(
        hname(&key.name),
        TSIG::new(
            TsigAlgorithm::from_name(hname(&key.algorithm)),
            time,
            tsig::FUDGE,
            mac,
            id,
            error,
            Vec::new(),
        ),
    )
}

fn max_size(request: &Request, edns: Option<&Edns>) -> u16 {
    match request.protocol() {
        hickory_server::net::xfer::Protocol::Udp => edns.map_or(512, |e| e.max_payload()),
        _ => u16::MAX,
    }
}

fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|req| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().clamp(512, 1232));
        e.set_dnssec_ok(req.flags().dnssec_ok);
        e
    })
}

async fn error<R: ResponseHandler>(
    rh: &mut R,
    request: &Request,
    code: ResponseCode,
    auth: &Auth,
) -> ResponseInfo {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.response_code = code;
    reply(rh, request, meta, &[], &[], &[], auth).await
}

/// Sends a one-message answer (TSIG-signed when the request was); a failure to send is
/// logged and reported as the header that was meant.
pub async fn reply<R: ResponseHandler>(
    rh: &mut R,
    request: &Request,
    meta: Metadata,
    answers: &[Record],
    authority: &[Record],
    additional: &[Record],
    auth: &Auth,
) -> ResponseInfo {
    let edns = response_edns(request);
    match send(
        rh,
        request,
        meta,
        edns.as_ref(),
        answers,
        authority,
        additional,
        auth,
        None,
        false,
    )
    .await
    {
        Ok((i, _)) => i,
        Err(e) => {
            tracing::debug!("{e}");
            ResponseInfo::from(hickory_proto::op::Header {
                metadata: meta,
                counts: Default::default(),
            })
        }
    }
}

/// Is `ip` in `prefix` (`10.0.0.0/8`, `::1/128`, or a bare address)?
pub fn in_prefix(ip: IpAddr, prefix: &str) -> bool {
    // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
    let ip = ip.to_canonical();
    let (addr, len) = match prefix.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (prefix, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let l = len.unwrap_or(32).min(32);
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let l = len.unwrap_or(128).min(128);
            let mask = if l == 0 { 0 } else { u128::MAX << (128 - l) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Checks the form of a transfer ACL entry.
pub fn check_acl(entry: &str) -> Result<(), String> {
    let bad =
        || format!("transfer {entry:?}: expected PREFIX key NAME, e.g. 127.0.0.0/8 key xfr-key");
    let parts: Vec<&str> = entry.split_whitespace().collect();
    let [prefix, "key", _] = parts.as_slice() else {
        return Err(bad());
    };
    let (addr, len) = prefix.split_once('/').unwrap_or((prefix, ""));
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    if !len.is_empty() {
        let l: u32 = len.parse().map_err(|_| bad())?;
        if l > if ip.is_ipv4() { 32 } else { 128 } {
            return Err(bad());
        }
    }
    Ok(())
}

/// A transfer ACL entry: `PREFIX key NAME`.
pub fn acl_allows(entry: &str, ip: IpAddr, key: &str) -> bool {
    let parts: Vec<&str> = entry.split_whitespace().collect();
    match parts.as_slice() {
        [prefix, "key", name] => {
            in_prefix(ip, prefix)
                && name
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(key.trim_end_matches('.'))
        }
        _ => false,
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let src = request.src();
        // TSIG first: a signed request that does not verify gets NOTAUTH and is logged.
        let auth = if request.signature.is_some() {
            match tsig::verify(
                request.as_slice(),
                self.node.tsig(),
                None,
                false,
                crate::runtime::wall(),
            ) {
                Ok((t, key)) => Auth::Key(key, t.mac),
                Err(r) => {
                    tracing::warn!(%src, "refused: {}", r.reason);
                    return tsig_error(&mut rh, request, r).await;
                }
            }
        } else {
            Auth::None
        };
        let Ok(info) = request.request_info() else {
            return error(&mut rh, request, ResponseCode::FormErr, &auth).await;
        };
        let Some(qname) = our_name(info.query.original().name()) else {
            return error(&mut rh, request, ResponseCode::FormErr, &auth).await;
        };
        let qtype = u16::from(info.query.query_type());
        match request.metadata.op_code {
            OpCode::Query => {}
            OpCode::Notify => {
                return notify::incoming(&*self.node, &mut rh, request, &qname, &auth).await;
            }
            _ => return error(&mut rh, request, ResponseCode::NotImp, &auth).await,
        }
        if info.query.query_class() != DNSClass::IN && info.query.query_class() != DNSClass::ANY {
            return error(&mut rh, request, ResponseCode::Refused, &auth).await;
        }
        if qtype == u16::from(RecordType::AXFR) || qtype == u16::from(RecordType::IXFR) {
            // Over UDP: ask for TCP, where `tcp` streams the transfer.
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.truncation = true;
            meta.authoritative = true;
            return reply(&mut rh, request, meta, &[], &[], &[], &auth).await;
        }
        self.query(&mut rh, request, &qname, qtype, &auth).await
    }
}

async fn tsig_error<R: ResponseHandler>(
    rh: &mut R,
    request: &Request,
    r: tsig::Refusal,
) -> ResponseInfo {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.response_code = ResponseCode::NotAuth;
    let edns = response_edns(request);
    let mut resp =
        MessageResponseBuilder::new(&request.queries, edns.as_ref()).build_no_records(meta);
    if let Some(sig) = &request.signature {
        // RFC 8945 §5.2: the error in a TSIG with an empty MAC, named after the request's key.
        let rd = &sig.data;
        let t = TSIG::new(
            rd.algorithm.clone(),
            crate::runtime::wall(),
            rd.fudge,
            Vec::new(),
            request.metadata.id,
            Some(TsigError::from(r.error)),
            Vec::new(),
        );
        resp.set_signature(Box::new(make_tsig_record(sig.name.clone(), t)));
    }
    match rh.send_response(resp).await {
        Ok(i) => i,
        Err(_) => ResponseInfo::from(hickory_proto::op::Header {
            metadata: meta,
            counts: Default::default(),
        }),
    }
}

impl DnsHandler {
    async fn query<R: ResponseHandler>(
        &self,
        rh: &mut R,
        request: &Request,
        qname: &Name,
        qtype: u16,
        auth: &Auth,
    ) -> ResponseInfo {
        let dnssec = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let node = &self.node;
        let built = node.state().with_quick(|st| {
            let (zone, origin) = zone_of(st, qname)?;
            let z = st.zones.get(&zone)?;
            let Some((_, _, overlay)) = node.served(&zone, z) else {
                return Some(Err(zone));
            };
            let v = View {
                content: &z.content,
                overlay: overlay.as_deref(),
            };
            Some(Ok(answer::answer(&v, &origin, qname, qtype, dnssec)))
        });
        let a = match built {
            None => return error(rh, request, ResponseCode::Refused, auth).await,
            Some(Err(zone)) => {
                tracing::debug!(zone, "no validated version to serve yet");
                return error(rh, request, ResponseCode::ServFail, auth).await;
            }
            Some(Ok(a)) => a,
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = a.aa;
        meta.response_code = if a.nxdomain {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        let conv = |v: &[Rr]| v.iter().map(to_record).collect::<Vec<_>>();
        let (an, ns, ad) = (conv(&a.answer), conv(&a.authority), conv(&a.additional));
        reply(rh, request, meta, &an, &ns, &ad, auth).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_acl_entries() {
        let lo: IpAddr = "127.0.0.5".parse().unwrap();
        assert!(in_prefix(lo, "127.0.0.0/8"));
        assert!(!in_prefix(lo, "10.0.0.0/8"));
        assert!(in_prefix(lo, "127.0.0.5"));
        assert!(in_prefix("::1".parse().unwrap(), "::1/128"));
        assert!(!in_prefix("::1".parse().unwrap(), "127.0.0.0/8"));
        assert!(acl_allows("127.0.0.0/8 key xfr-key", lo, "xfr-key."));
        assert!(!acl_allows("127.0.0.0/8 key xfr-key", lo, "other."));
        assert!(!acl_allows("10.0.0.0/8 key xfr-key", lo, "xfr-key."));
        assert!(!acl_allows("127.0.0.0/8", lo, "xfr-key."));
    }
}
