//! Key-lifecycle endpoints: the key states of a zone, operator key events (rollover, DS
//! seen/gone, clock confirmed, backup committed), the keys to back up, and the timing
//! audit of a zone's policy against the zone and its parent.
//!
//! ```text
//!  GET  /zones/NAME/keys          states, goals, parent, backups, engine notes, policy, facts
//!  POST /zones/NAME/keys          {"action": "rollover"|"ds-seen"|"ds-gone"|"clock-ok"|"backup-commit", …}
//!  GET  /zones/NAME/backup        keys not yet backed up (backup prepare)
//!  GET  /zones/NAME/policy-check  findings, the parent's DS view
//! ```

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Reply, absolute, error, json_reply, origin, parse, propose};
use crate::kasp::{Event, KeySet, RECORDS, Role};
use crate::keys::KeyId;
use crate::node::Node;
use crate::replica::Command;

use super::api::KeyAction as KeyReq;

pub(super) async fn handle(
    node: &Arc<Node>,
    caller: &crate::access::Caller,
    method: &str,
    name: &str,
    what: &str,
    body: &[u8],
) -> Reply {
    let name = absolute(name);
    match (method, what) {
        ("GET", "keys") => match view(node, &name) {
            Some(v) => json_reply(200, v),
            None => error(404, format!("no zone {name}")),
        },
        ("POST", "keys") => {
            let req: KeyReq = match parse(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let (event, mut text) = match event_of(node, &name, &req) {
                Ok(e) => e,
                Err(e) => return error(400, e),
            };
            let claim = match &event {
                Event::DsSeen { key, .. } => Some((*key, true)),
                Event::DsGone { key, .. } => Some((*key, false)),
                _ => None,
            };
            if let Some((key, seen)) = claim {
                match parent_agrees(node, &name, key, seen).await {
                    Ok(note) => text.push_str(&format!(" ({note})")),
                    Err(why) if req.force => text.push_str(&format!(" (FORCED: {why})")),
                    Err(why) => {
                        return error(
                            409,
                            format!("{why}; a security officer may record it anyway with --force"),
                        );
                    }
                }
            }
            propose(
                node,
                Command::KeyEvent {
                    zone: name.clone(),
                    event,
                    origin: Some(origin(node, caller, text)),
                },
            )
            .await
        }
        ("GET", "backup") => match backup_list(node, &name) {
            Some(v) => json_reply(200, v),
            None => error(404, format!("no zone {name}")),
        },
        ("GET", "policy-check") => policy_check(node, &name).await,
        _ => error(
            404,
            format!("no such endpoint: {method} /zones/{name}/{what}"),
        ),
    }
}

/// The key of `zone` with tag `tag`; an ambiguous tag is refused.
fn by_tag(set: &KeySet, tag: u16) -> Result<KeyId, String> {
    let found: Vec<KeyId> = set
        .keys
        .values()
        .filter(|k| k.tag == tag)
        .map(|k| k.id)
        .collect();
    match found.as_slice() {
        [id] => Ok(*id),
        [] => Err(format!("no key with tag {tag}")),
        _ => Err(format!(
            "tag {tag} is ambiguous: {} keys have it",
            found.len()
        )),
    }
}

fn event_of(node: &Node, zone: &str, r: &KeyReq) -> Result<(Event, String), String> {
    let (set, policy) = node
        .sm
        .with(|st| {
            let z = st.zones.get(zone)?;
            Some((z.keyset.clone(), z.config.as_ref()?.synced_policy()))
        })
        .ok_or_else(|| format!("no zone {zone}"))?;
    let at = node.kasp_now();
    let tag = || r.tag.ok_or("give the key's tag");
    let e = match r.action.as_str() {
        "rollover" => {
            let role = r.role.as_deref().ok_or("give the role: ksk, zsk or csk")?;
            let role = Role::parse(role).ok_or(format!("role {role:?}: ksk, zsk or csk"))?;
            Event::Rollover { role }
        }
        "ds-seen" => Event::DsSeen {
            key: by_tag(&set, tag()?)?,
            // Without a TTL the configured one is recorded: never a delay of 0.
            ttl: r.ttl.unwrap_or(policy.ds_ttl),
            at,
        },
        "ds-gone" => Event::DsGone {
            key: by_tag(&set, tag()?)?,
            at,
        },
        "clock-ok" => Event::ClockOk,
        "backup-commit" => {
            let keys: Vec<KeyId> = if r.all {
                set.keys
                    .values()
                    .filter(|k| !k.backed_up)
                    .map(|k| k.id)
                    .collect()
            } else {
                r.tags
                    .iter()
                    .map(|t| by_tag(&set, *t))
                    .collect::<Result<_, _>>()?
            };
            if keys.is_empty() {
                return Err("no keys to commit: give --all or tags".into());
            }
            Event::BackupCommit { keys, at }
        }
        a => {
            return Err(format!(
                "unknown action {a:?}: rollover, ds-seen, ds-gone, clock-ok, backup-commit"
            ));
        }
    };
    let text = match (&r.action[..], r.tag, &r.role) {
        (_, Some(t), _) => format!("keys {} {zone} {t}", r.action),
        (_, None, Some(role)) => format!("keys {} {zone} {role}", r.action),
        _ => format!("keys {} {zone} ({e})", r.action),
    };
    Ok((e, text))
}

fn view(node: &Node, zone: &str) -> Option<Value> {
    let (set, cfg, facts, records) = node.sm.with(|st| {
        let z = st.zones.get(zone)?;
        let records: Vec<(KeyId, String, String)> = st
            .zone_keys(zone)
            .map(|k| (k.id, k.handle.clone(), k.role.clone()))
            .collect();
        Some((
            z.keyset.clone(),
            z.config.clone()?,
            z.current.as_ref().map(|v| v.facts),
            records,
        ))
    })?;
    let notes = if node.is_leader() {
        node.local()
            .keys_notes
            .get(zone)
            .cloned()
            .unwrap_or(set.notes.clone())
    } else {
        set.notes.clone()
    };
    let keys: Vec<Value> = set
        .keys
        .values()
        .map(|k| {
            let handle = records
                .iter()
                .find(|r| r.0 == k.id)
                .map(|r| r.1.clone())
                .unwrap_or_default();
            let mut recs = serde_json::Map::new();
            for (i, name) in RECORDS.iter().enumerate() {
                recs.insert(name.to_string(), json!(k.rec[i].to_string()));
            }
            json!({
                "tag": k.tag, "id": k.id.to_string(), "role": k.role.name(),
                "algorithm": k.algorithm, "goal": format!("{:?}", k.goal).to_lowercase(),
                "records": recs, "parent": format!("{:?}", k.parent),
                "backed_up": k.backed_up, "created": k.created, "active_since": k.active_since,
                "handle": handle,
            })
        })
        .collect();
    Some(json!({
        "zone": zone,
        "keys": keys,
        "notes": notes,
        "clock_hold": set.clock_hold,
        "ds_ttl_observed": set.ds_ttl_observed,
        "seq": set.seq,
        "last_eval": set.last_eval,
        "now": node.kasp_now(),
        "policy": cfg.synced_policy(),
        "facts": facts,
        "keyset": set,
    }))
}

fn backup_list(node: &Node, zone: &str) -> Option<Value> {
    node.sm.with(|st| {
        let z = st.zones.get(zone)?;
        let todo: Vec<Value> = z
            .keyset
            .keys
            .values()
            .filter(|k| !k.backed_up)
            .map(|k| {
                let rec = st.keys.iter().find(|r| r.id == k.id);
                json!({
                    "tag": k.tag, "id": k.id.to_string(), "role": k.role.name(),
                    "algorithm": k.algorithm,
                    "goal": format!("{:?}", k.goal).to_lowercase(),
                    "handle": rec.map(|r| r.handle.clone()),
                    "sealed_in_cluster_state": rec.is_some_and(|r| r.sealed.is_some()),
                })
            })
            .collect();
        Some(json!({ "zone": zone, "to_back_up": todo }))
    })
}

/// Cross-checks an operator's `ds-seen` (`seen`) or `ds-gone` of `key` with the parent's
/// servers, when the zone's policy names them (`parent_servers`) or a resolver to find
/// them. `Ok` says how it was checked; `Err` gives the parent's answer that contradicts it.
async fn parent_agrees(
    node: &Arc<Node>,
    zone: &str,
    key: KeyId,
    seen: bool,
) -> Result<String, String> {
    let Some((policy, dnskey)) = node.sm.with(|st| {
        let z = st.zones.get(zone)?;
        let dnskey = st
            .keys
            .iter()
            .find(|r| r.id == key)
            .map(|r| r.dnskey.clone())?;
        Some((z.config.as_ref()?.synced_policy(), dnskey))
    }) else {
        return Err(format!("zone {zone} or its key is unknown"));
    };
    if policy.parent_servers.is_empty() && policy.parent_resolver.is_empty() {
        return Ok("not cross-checked: the policy names no parent servers".into());
    }
    let origin = crate::zone::Name::parse(zone.as_bytes(), None).map_err(|e| e.to_string())?;
    let servers = crate::kasp::parent::servers(&policy, &origin)
        .await
        .map_err(|e| format!("the parent's servers cannot be found: {e}"))?;
    let view = crate::kasp::parent::ask(&servers, &origin).await;
    let answers: Vec<String> = view
        .servers
        .iter()
        .map(|(s, r)| match r {
            Ok(ds) if ds.is_empty() => format!("{s}: no DS"),
            Ok(ds) => format!("{s}: {} DS", ds.len()),
            Err(e) => format!("{s}: {e}"),
        })
        .collect();
    if !view.agree {
        return Err(format!(
            "the parent's servers do not all answer alike: {}",
            answers.join("; ")
        ));
    }
    let served = crate::kasp::parent::holds(&view.ds, &origin, &dnskey);
    match (seen, served) {
        (true, true) => Ok(format!("the parent serves its DS: {}", answers.join("; "))),
        (false, false) => Ok(format!(
            "the parent no longer serves its DS: {}",
            answers.join("; ")
        )),
        (true, false) => Err(format!(
            "the parent's servers do not serve a DS of this key: {}",
            answers.join("; ")
        )),
        (false, true) => Err(format!(
            "the parent's servers still serve a DS of this key: {}",
            answers.join("; ")
        )),
    }
}

async fn policy_check(node: &Arc<Node>, zone: &str) -> Reply {
    let Some((cfg, facts, dnskey_ttl)) = node.sm.with(|st| {
        let z = st.zones.get(zone)?;
        let apex = crate::zone::Name::parse(zone.as_bytes(), None).ok()?;
        let dnskey_ttl = z
            .content
            .get(&(
                crate::replica::state::Owner(apex),
                crate::zone::rtype::DNSKEY,
            ))
            .map(|v| v.ttl);
        Some((
            z.config.clone()?,
            z.current.as_ref().map(|v| v.facts).unwrap_or_default(),
            dnskey_ttl,
        ))
    }) else {
        return error(404, format!("no zone {zone}"));
    };
    let policy = cfg.synced_policy();
    let origin = match crate::zone::Name::parse(zone.as_bytes(), None) {
        Ok(o) => o,
        Err(e) => return error(400, e.to_string()),
    };
    let (servers, discovery) = match crate::kasp::parent::servers(&policy, &origin).await {
        Ok(s) => (s, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let parent = if servers.is_empty() {
        None
    } else {
        Some(crate::kasp::parent::ask(&servers, &origin).await)
    };
    let mut findings = crate::kasp::policy::audit(
        &policy,
        &facts,
        dnskey_ttl,
        parent.as_ref().and_then(|p| p.ttl),
    );
    if let Some(e) = discovery {
        findings.push(crate::kasp::policy::Finding {
            unsafe_: true,
            text: format!("the parent's servers cannot be found: {e}"),
        });
    }
    match &parent {
        None if !policy.parent_resolver.is_empty() => {}
        None => findings.push(crate::kasp::policy::Finding {
            unsafe_: false,
            text: "no parent_servers or parent_resolver in the policy: DS presence is recorded \
                   by `keys ds-seen` and `keys ds-gone`, and the served DS TTL is not checked"
                .into(),
        }),
        Some(p) if !p.agree => findings.push(crate::kasp::policy::Finding {
            unsafe_: true,
            text: "the parent's servers do not agree on the DS set (or did not all answer): \
                   no DS step is taken until they do"
                .into(),
        }),
        Some(_) => {}
    }
    json_reply(
        200,
        json!({
            "zone": zone,
            "facts": facts,
            "zone_dnskey_ttl": dnskey_ttl,
            "parent": parent,
            "findings": findings,
            "unsafe": findings.iter().any(|f| f.unsafe_),
        }),
    )
}
