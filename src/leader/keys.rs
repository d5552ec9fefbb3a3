//! The key lifecycle on the leader: the KASP step (keys generated, evaluations committed)
//! and the checks of the parent's DS.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::propose::propose;
use super::zone::Memo;
use crate::node::Node;
use crate::replica::{Command, KeyRecord, Outcome, Version, ZoneConfig};
use crate::zone::{Name, rtype};

/// Runs the key-lifecycle engine for `zone`: makes the keys it asks for, commits its
/// evaluation when it changes something (or as a heartbeat for the clock check), and
/// reports the parent actions it wants. Returns the key set to sign with, or `None` when
/// keys were just made.
pub(super) async fn keys_step(
    node: &Arc<Node>,
    zone: &str,
    cfg: &ZoneConfig,
    current: Option<&Version>,
    set: crate::kasp::KeySet,
    records: &[KeyRecord],
    memo: &mut Memo,
) -> Result<Option<crate::kasp::KeySet>, String> {
    use crate::kasp::Action;
    let policy = cfg.synced_policy();
    let facts = current.map(|v| v.facts).unwrap_or_default();
    let now = node.kasp_now();
    let set = match check_parent(node, zone, &policy, set, records, memo, now).await {
        Some(s) => s,
        None => return Ok(None),
    };
    let (_, ev) = crate::kasp::evaluate(&set, &policy, &facts, now);
    let mut made = false;
    let mut tags: Vec<(u16, u8)> = records.iter().map(|r| (r.tag, r.algorithm)).collect();
    for a in &ev.actions {
        match a {
            Action::Generate { role, algorithm } => {
                let rec = generate_unique(node, zone, *algorithm, role.name(), &tags).await?;
                tags.push((rec.tag, rec.algorithm));
                tracing::info!(zone, role = role.name(), tag = rec.tag, "key generated");
                match propose(node, Command::AddKey { key: rec }).await? {
                    Outcome::Refused(e) => return Err(e),
                    _ => made = true,
                }
            }
            Action::SubmitDs { key, tag } | Action::RetractDs { key, tag } => {
                let submit = matches!(a, Action::SubmitDs { .. });
                if memo.parent.told.insert((*key, submit)) {
                    let ds = records
                        .iter()
                        .find(|r| r.id == *key)
                        .and_then(|r| crate::keys::DnsKey::from_rdata(&r.dnskey))
                        .and_then(|d| {
                            let origin = Name::parse(zone.as_bytes(), None).ok()?;
                            d.ds_rdata(&origin, 2)
                        })
                        .and_then(|d| crate::zone::rdata::to_text(rtype::DS, &d).ok())
                        .unwrap_or_default();
                    tracing::warn!(
                        zone,
                        tag,
                        ds,
                        "{}",
                        if submit {
                            "parent: submit this DS"
                        } else {
                            "parent: withdraw this DS"
                        }
                    );
                }
            }
        }
    }
    let mut notes = ev.notes.clone();
    notes.extend(memo.parent.note.clone());
    node.local().keys_notes.insert(zone.into(), notes);
    if made {
        return Ok(None);
    }
    let heartbeat = (policy.max_clock_jump / 4).clamp(60, 86_400);
    // Notes are replicated too (any node's `keys show` says why the engine waits); they
    // change only when a reason does.
    if !ev.changes_state() && ev.notes == set.notes && now < set.last_eval.saturating_add(heartbeat)
    {
        return Ok(Some(set));
    }
    propose(
        node,
        Command::KeyEval {
            zone: zone.into(),
            now,
            facts,
        },
    )
    .await?;
    for t in &ev.transitions {
        tracing::info!(zone, "key {t}");
    }
    Ok(node
        .sm
        .with(|st| st.zones.get(zone).map(|z| z.keyset.clone())))
}

/// Asks the parent's servers about the DS of keys that wait on it (at most every
/// `parent_check_interval`, shortened by the drill clock) and commits what they agree on.
/// Returns the key set after that, or `None` when a commit failed (this node may have
/// lost leadership).
pub(super) async fn check_parent(
    node: &Arc<Node>,
    zone: &str,
    policy: &crate::kasp::Policy,
    set: crate::kasp::KeySet,
    records: &[KeyRecord],
    memo: &mut Memo,
    now: u64,
) -> Option<crate::kasp::KeySet> {
    use crate::kasp::parent;
    if (policy.parent_servers.is_empty() && policy.parent_resolver.is_empty())
        || !parent::waiting(&set)
    {
        return Some(set);
    }
    let every = Duration::from_secs(
        (policy.parent_check_interval as u64 / node.cfg.signer.kasp_time_scale.max(1)).max(1),
    );
    if memo.parent.asked.is_some_and(|t| t.elapsed() < every) {
        return Some(set);
    }
    memo.parent.asked = Some(Instant::now());
    let origin = Name::parse(zone.as_bytes(), None).ok()?;
    let servers = match parent::servers(policy, &origin).await {
        Ok(s) => s,
        Err(e) => {
            memo.parent.note = Some(format!("parent servers: {e}; waiting"));
            return Some(set);
        }
    };
    let view = parent::ask(&servers, &origin).await;
    if !view.agree {
        let said: Vec<String> = view
            .servers
            .iter()
            .map(|(a, r)| match r {
                Ok(ds) => format!("{a}: {} DS", ds.len()),
                Err(e) => format!("{a}: {e}"),
            })
            .collect();
        memo.parent.note = Some(format!(
            "parent servers do not agree (or did not all answer): {}; waiting",
            said.join("; ")
        ));
        return Some(set);
    }
    memo.parent.note = None;
    if let Some(ttl) = view
        .ttl
        .filter(|t| *t > policy.ds_ttl.max(set.ds_ttl_observed))
    {
        tracing::warn!(
            zone,
            served = ttl,
            configured = policy.ds_ttl,
            "the parent serves the DS with a TTL above the policy's ds_ttl; the engine waits the served one"
        );
    }
    let events = parent::observations(
        &set,
        &view,
        &origin,
        |id| {
            records
                .iter()
                .find(|r| r.id == *id)
                .map(|r| r.dnskey.clone())
        },
        now,
    );
    for event in events {
        tracing::info!(zone, "parent: {event}");
        let cmd = Command::KeyEvent {
            zone: zone.into(),
            event,
            origin: None,
        };
        match propose(node, cmd).await {
            Ok(Outcome::Refused(e)) => tracing::warn!(zone, "parent observation refused: {e}"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(zone, "parent observation: {e}");
                return None;
            }
        }
    }
    node.sm
        .with(|st| st.zones.get(zone).map(|z| z.keyset.clone()))
}

/// Makes a key whose tag no other key of the zone has (of the same algorithm): a
/// colliding one is discarded and made again.
pub(super) async fn generate_unique(
    node: &Arc<Node>,
    zone: &str,
    alg: u8,
    role: &str,
    taken: &[(u16, u8)],
) -> Result<KeyRecord, String> {
    for _ in 0..8 {
        let n = node.clone();
        let (z, r) = (zone.to_string(), role.to_string());
        let rec = crate::runtime::spawn_blocking(move || n.keys.generate(&z, alg, &r))
            .await
            .map_err(|e| e.to_string())??;
        if !taken.contains(&(rec.tag, rec.algorithm)) {
            return Ok(rec);
        }
        tracing::warn!(
            zone,
            tag = rec.tag,
            "new key's tag collides with a key of the zone; made again"
        );
    }
    Err(format!(
        "zone {zone}: 8 new keys in a row had colliding tags"
    ))
}
