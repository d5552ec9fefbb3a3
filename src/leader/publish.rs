//! What the leader does once a version is committed: write the zone's file output and send
//! NOTIFY to its secondaries. Both carry the version's fencing token (term, log index) and
//! are skipped when this node is no longer the leader or the version is no longer current.
//!
//! The file's first line holds the token; a writer whose token is lower than the file's
//! refuses to overwrite it, so a deposed leader that wakes up late cannot replace a newer
//! version with an older one.

use std::path::Path;

use crate::dns::{Remote, send_notify};
use crate::node::Node;
use crate::replica::Token;
use crate::zone::Name;
use crate::zone::write::AtomicFile;

const HEADER: &str = "; quorumsign signed zone";

/// The token recorded in the first line of a file output, if it has one.
pub fn file_token(path: &Path) -> Option<Token> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line).ok()?;
    let rest = line.strip_prefix(HEADER)?;
    let tok = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("token="))?;
    let (t, i) = tok.split_once(':')?;
    Some(Token::new(t.parse().ok()?, i.parse().ok()?))
}

/// Writes `text` to `path` (temp + fsync + rename) unless the file holds a newer token.
pub fn write_guarded(
    path: &Path,
    zone: &str,
    serial: u32,
    token: Token,
    text: &str,
) -> Result<(), String> {
    if let Some(have) = file_token(path)
        && have > token
    {
        return Err(format!(
            "{}: holds token {have}, newer than this writer's {token}; not overwritten",
            path.display(),
        ));
    }
    let mut f = AtomicFile::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // The node's umask keeps what it creates private; a signed zone is public, for the
    // name servers that read it.
    f.set_mode(0o644)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let head = format!("{HEADER} zone={zone} serial={serial} token={token}\n");
    f.write_all(head.as_bytes())
        .and_then(|_| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.commit().map_err(|e| format!("{}: {e}", path.display()))
}

/// Is `token` still the zone's current version in `st`, on a node that may publish?
fn current_in(
    node: &Node,
    st: &crate::replica::state::ClusterState,
    zone: &str,
    token: Token,
) -> bool {
    node.may_publish().is_ok()
        && st
            .zones
            .get(zone)
            .and_then(|z| z.current.as_ref())
            .is_some_and(|v| v.token == token)
}

/// As [`current_in`], from async code (the state lock is waited for off the worker).
fn still_current(node: &Node, zone: &str, token: Token) -> bool {
    node.sm.with(|st| current_in(node, st, zone, token))
}

/// How long the leader waits for the other members to serve a new version before it
/// sends NOTIFY anyway.
const MEMBERS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until every other member reports (a status request over the node transport) that
/// it validated `serial` of `zone`. Members that do not answer are skipped; `Err` names
/// those still behind at the bound.
async fn members_serving(node: &Node, zone: &str, serial: u32) -> Result<(), String> {
    use openraft::type_config::async_runtime::WatchReceiver;
    let others: Vec<u64> = {
        let m = node.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != node.id)
            .map(|(id, _)| *id)
            .collect()
    };
    let deadline = tokio::time::Instant::now() + MEMBERS_WAIT;
    let mut behind = others;
    loop {
        let answers = node
            .ask_each(&behind, crate::transport::Control::Status, MEMBERS_WAIT / 5)
            .await;
        behind = answers
            .into_iter()
            .filter_map(|(id, r)| {
                let Ok(crate::transport::ControlReply::Status(b)) = r else {
                    return None; // unreachable: not waited for
                };
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                let served = v["zones"].as_array().and_then(|zs| {
                    zs.iter()
                        .find(|z| z["name"] == zone)
                        .and_then(|z| z["validated_serial"].as_u64())
                });
                served
                    .is_none_or(|s| !crate::zone::serial::le(serial, s as u32))
                    .then_some(id)
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let ids: Vec<String> = behind.iter().map(|id| format!("node {id}")).collect();
            return Err(ids.join(", "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// File output and NOTIFY for the version of `zone` published with `token`.
pub async fn after_publish(node: std::sync::Arc<Node>, zone: String, serial: u32, token: Token) {
    let (output, notify) = node.sm.with(|st| {
        st.zones
            .get(&zone)
            .and_then(|z| z.config.as_ref())
            .map(|c| (c.output.clone(), c.notify.clone()))
            .unwrap_or_default()
    });
    if let Some(path) = output {
        let n = node.clone();
        let z = zone.clone();
        let res = crate::runtime::spawn_blocking(move || {
            // The text is taken under the same read as the check, so it is that version.
            let text = {
                let st = n.sm.read();
                if !current_in(&n, &st, &z, token) {
                    return Err("no longer the current version under this leader; skipped".into());
                }
                st.zones.get(&z).map(|zs| zs.to_text()).unwrap_or_default()
            };
            write_guarded(Path::new(&path), &z, serial, token, &text)
        })
        .await
        .unwrap_or_else(Err);
        match res {
            Ok(()) => tracing::info!(zone, serial, "file output written"),
            Err(e) => tracing::warn!(zone, serial, "file output: {e}"),
        }
    }
    let Ok(origin) = Name::parse(zone.as_bytes(), None) else {
        return;
    };
    if notify.is_empty() {
        return;
    }
    // Secondaries may ask any node: NOTIFY once the other members serve this version
    // (or have not answered within the bound — a dead node does not hold it back).
    let waited = members_serving(&node, &zone, serial).await;
    if let Err(lagging) = waited {
        tracing::warn!(
            zone,
            serial,
            "NOTIFY sent while {lagging} did not serve this serial yet"
        );
    }
    for target in notify {
        if !still_current(&node, &zone, token) {
            tracing::warn!(
                zone,
                serial,
                "NOTIFY stopped: no longer the current version under this leader"
            );
            return;
        }
        let remote = match Remote::parse(&target) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(zone, "NOTIFY target {e}");
                continue;
            }
        };
        let key = match remote.tsig(&node.tsig) {
            Ok(k) => k.cloned(),
            Err(e) => {
                tracing::warn!(zone, "NOTIFY to {}: {e}", remote.addr);
                continue;
            }
        };
        match send_notify(&remote, key.as_ref(), &origin, token.into()).await {
            Ok(()) => tracing::info!(zone, serial, to = %remote.addr, "NOTIFY sent"),
            Err(e) => tracing::warn!(zone, serial, to = %remote.addr, "NOTIFY failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_token_does_not_overwrite_a_higher_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("example.signed");
        write_guarded(&p, "example.", 5, Token::new(3, 100), "new\n").unwrap();
        assert_eq!(file_token(&p), Some(Token::new(3, 100)));
        let e = write_guarded(&p, "example.", 4, Token::new(2, 90), "old\n").unwrap_err();
        assert!(e.contains("newer than this writer's 2:90"), "{e}");
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("new\n"));
        write_guarded(&p, "example.", 6, Token::new(3, 120), "newer\n").unwrap();
        assert_eq!(file_token(&p), Some(Token::new(3, 120)));
    }
}
