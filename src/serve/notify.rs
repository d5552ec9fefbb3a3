//! NOTIFY (RFC 1996) in, from the hidden primary (NOTIFY out is [`crate::dns::send_notify`]).
//!
//! Every node accepts a NOTIFY for a zone whose input is a primary (from that primary's
//! address, with its key when one is configured) and notes it; the leader fetches at its
//! next tick. NOTIFY out is sent by the leader only, and only while the version it
//! announces is still the zone's current one under its own term (the fencing token).

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};

use super::Source;
use super::{Auth, error, reply};
use crate::dns::primary_of;
use crate::zone::Name;

pub async fn incoming<R: ResponseHandler>(
    node: &dyn Source,
    rh: &mut R,
    request: &Request,
    qname: &Name,
    auth: &Auth,
) -> ResponseInfo {
    let src = request.src();
    let zone = qname.to_text();
    let input = node.state().with(|st| {
        st.zones
            .get(&zone)
            .and_then(|z| z.config.as_ref())
            .map(|c| c.input.clone())
    });
    let Some(Some(Ok(primary))) = input.as_deref().map(primary_of) else {
        tracing::warn!(%src, zone, "NOTIFY ignored: the zone does not take its input from a primary");
        return error(rh, request, ResponseCode::NotAuth, auth).await;
    };
    if primary.addr.ip().to_canonical() != src.ip().to_canonical() {
        tracing::warn!(%src, zone, primary = %primary.addr, "NOTIFY refused: not from the zone's primary");
        return error(rh, request, ResponseCode::Refused, auth).await;
    }
    if let Some(k) = &primary.key {
        let ok = auth.key_name().is_some_and(|a| {
            a.trim_end_matches('.')
                .eq_ignore_ascii_case(k.trim_end_matches('.'))
        });
        if !ok {
            tracing::warn!(%src, zone, "NOTIFY refused: not signed with key {k}");
            return error(rh, request, ResponseCode::Refused, auth).await;
        }
    }
    tracing::info!(%src, zone, "NOTIFY from the primary");
    node.notified(zone);
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.authoritative = true;
    reply(rh, request, meta, &[], &[], &[], auth).await
}
