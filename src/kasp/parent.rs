//! Parent DS checks: ask every authoritative server of the parent for the zone's DS
//! RRset, and turn what they agree on into observations for the engine.
//!
//! A DS counts as seen only when every server serves it, and as gone only when none does;
//! the TTL recorded is the highest any server serves (the engine waits on the larger of
//! that and the configured one: see the .nz incident, shared/seeds/004).

use std::net::SocketAddr;
use std::time::Duration;

use super::{DS, Event, KeySet, Parent, St};
use crate::keys::{DnsKey, KeyId};
use crate::zone::{Name, rtype};

/// Longest wait for one parent server.
const ASK: Duration = Duration::from_secs(5);

/// What the parent's servers said.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ParentView {
    /// Per server: the DS rdatas (hex) it serves, or the error.
    pub servers: Vec<(String, Result<Vec<String>, String>)>,
    /// Every server answered and all serve the same DS set.
    pub agree: bool,
    /// The agreed DS set.
    #[serde(skip)]
    pub ds: Vec<Vec<u8>>,
    /// The highest DS TTL any server serves.
    pub ttl: Option<u32>,
}

/// The parent servers to ask about `zone`: the policy's `parent_servers`, or else the
/// addresses of the parent's NS set as `parent_resolver` finds them (empty when neither is
/// configured).
pub async fn servers(p: &super::Policy, zone: &Name) -> Result<Vec<SocketAddr>, String> {
    if !p.parent_servers.is_empty() {
        return Ok(p
            .parent_servers
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect());
    }
    if p.parent_resolver.is_empty() {
        return Ok(Vec::new());
    }
    let resolver: SocketAddr = if p.parent_resolver == "system" {
        system_resolver()?
    } else {
        p.parent_resolver
            .parse()
            .map_err(|e| format!("parent_resolver {:?}: {e}", p.parent_resolver))?
    };
    let parent = zone
        .parent()
        .ok_or_else(|| format!("{} has no parent", zone.to_text()))?;
    let ask = |name: Name, t: u16| async move {
        tokio::time::timeout(ASK, crate::dns::client::resolve(resolver, &name, t))
            .await
            .map_err(|_| format!("resolver {resolver}: no answer in {ASK:?}"))?
    };
    let ns: Vec<Name> = ask(parent.clone(), rtype::NS)
        .await?
        .into_iter()
        .filter(|(t, _, _)| *t == rtype::NS)
        .filter_map(|(_, _, d)| Name::from_wire(&d).ok())
        .collect();
    if ns.is_empty() {
        return Err(format!(
            "resolver {resolver}: no NS set for the parent {}",
            parent.to_text()
        ));
    }
    let mut out = Vec::new();
    for n in ns {
        for t in [rtype::A, rtype::AAAA] {
            for (got, _, d) in ask(n.clone(), t).await.unwrap_or_default() {
                let ip: Option<std::net::IpAddr> = match got {
                    rtype::A => <[u8; 4]>::try_from(&d[..]).ok().map(Into::into),
                    rtype::AAAA => <[u8; 16]>::try_from(&d[..]).ok().map(Into::into),
                    _ => None,
                };
                if let Some(ip) = ip {
                    out.push(SocketAddr::new(ip, p.parent_port));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(format!(
            "resolver {resolver}: the parent's name servers have no addresses"
        ));
    }
    Ok(out)
}

/// The first `nameserver` of /etc/resolv.conf, port 53.
fn system_resolver() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "/etc/resolv.conf names no nameserver".into())
}

/// Asks every server in `servers` for the DS RRset of `zone`.
pub async fn ask(servers: &[SocketAddr], zone: &Name) -> ParentView {
    let mut view = ParentView {
        agree: !servers.is_empty(),
        ..Default::default()
    };
    let mut first: Option<Vec<Vec<u8>>> = None;
    for &addr in servers {
        let got = match tokio::time::timeout(ASK, crate::dns::client::rrset(addr, zone, rtype::DS))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("{addr}: no answer in {ASK:?}")),
        };
        match got {
            Ok((ttl, ds)) => {
                if let Some(t) = ttl {
                    view.ttl = Some(view.ttl.map_or(t, |v| v.max(t)));
                }
                match &first {
                    None => first = Some(ds.clone()),
                    Some(f) if *f != ds => view.agree = false,
                    Some(_) => {}
                }
                let hex = ds
                    .iter()
                    .map(|d| data_encoding::HEXLOWER.encode(d))
                    .collect();
                view.servers.push((addr.to_string(), Ok(hex)));
            }
            Err(e) => {
                view.agree = false;
                view.servers.push((addr.to_string(), Err(e)));
            }
        }
    }
    view.ds = first.unwrap_or_default();
    view
}

/// Does `ds` (a DS set) hold a DS of this key, in any digest type?
pub fn holds(ds: &[Vec<u8>], zone: &Name, dnskey: &[u8]) -> bool {
    let Some(k) = DnsKey::from_rdata(dnskey) else {
        return false;
    };
    [1u8, 2, 4]
        .iter()
        .filter_map(|&t| k.ds_rdata(zone, t))
        .any(|d| ds.contains(&d))
}

/// The observations an agreed parent view gives for `set` at `now`: DS seen for keys
/// whose DS is submitted and now served, DS gone for withdrawn ones no longer served,
/// and the served TTL when it is higher than any seen before.
pub fn observations(
    set: &KeySet,
    view: &ParentView,
    zone: &Name,
    dnskey_of: impl Fn(&KeyId) -> Option<Vec<u8>>,
    now: u64,
) -> Vec<Event> {
    let mut out = Vec::new();
    if !view.agree {
        return out;
    }
    let ttl = view.ttl.unwrap_or(0);
    for k in set.keys.values() {
        let Some(dnskey) = dnskey_of(&k.id) else {
            continue;
        };
        let served = holds(&view.ds, zone, &dnskey);
        match (k.rec[DS], k.parent, served) {
            (St::R, Parent::Unknown | Parent::Gone { .. }, true) => out.push(Event::DsSeen {
                key: k.id,
                ttl,
                at: now,
            }),
            (St::U, Parent::Unknown | Parent::Seen { .. }, false) => {
                out.push(Event::DsGone { key: k.id, at: now })
            }
            _ => {}
        }
    }
    if ttl > set.ds_ttl_observed {
        out.push(Event::DsTtlSeen { ttl });
    }
    out
}

/// Whether any key waits on the parent (a DS submitted but not seen, or withdrawn but not
/// gone).
pub fn waiting(set: &KeySet) -> bool {
    set.keys.values().any(|k| match (k.rec[DS], k.parent) {
        (St::R, Parent::Seen { .. }) | (St::U, Parent::Gone { .. }) => false,
        (St::R | St::U, _) => true,
        _ => false,
    })
}
